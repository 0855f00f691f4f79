//go:build linux && chaos

package chaos

import (
	"testing"
	"time"
)

// TestChaosFull is the full run: at least 300 forced transitions, every
// fault kind more than 20 times (about 40 minutes on 2 cores). Run it with
//
//	go test -tags chaos -run TestChaosFull -timeout 90m -v ./chaos/ [-args -chaos.seed=N -chaos.report=FILE]
//
// and record its summary in docs/reliability.md.
func TestChaosFull(t *testing.T) {
	runChaos(t, 300, 80*time.Minute)
}
