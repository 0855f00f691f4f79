//go:build linux && chaos

package chaos

import (
	"testing"
	"time"
)

// TestChaosFull is the full run: at least 200 forced transitions (about 25
// minutes on 2 cores). Run it with
//
//	go test -tags chaos -run TestChaosFull -timeout 90m -v ./chaos/ [-args -chaos.seed=N -chaos.report=FILE]
//
// and record its summary in docs/reliability.md.
func TestChaosFull(t *testing.T) {
	runChaos(t, 200, 75*time.Minute)
}
