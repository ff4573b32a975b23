//go:build tools

// Pins h2spec and its dependencies (go.mod, go.sum) for scripts/install-deps,
// which builds it into .tools/bin: go build github.com/summerwind/h2spec/cmd/h2spec
package tools

import _ "github.com/summerwind/h2spec/cmd/h2spec"
