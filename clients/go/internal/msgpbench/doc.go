// Package msgpbench measures the protocol package's hand-written codec
// against two well-kept Go MessagePack modules on the same frames. It is its
// own module so that the sluice.dev/go library keeps no dependency; see
// README.md for the command and the results.
package msgpbench
