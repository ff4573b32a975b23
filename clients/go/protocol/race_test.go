//go:build race

package protocol

// raceEnabled: allocation counts are not checked under the race detector.
const raceEnabled = true
