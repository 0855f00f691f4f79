//go:build linux && chaos

package chaos

import (
	"testing"
	"time"
)

// TestChaosClusterFull is the full cluster run: at least 100 forced
// transitions, which takes at least 20 rounds of ClusterFaultKinds (about
// 12 minutes on 2 cores). Run it with
//
//	go test -tags chaos -run TestChaosClusterFull -timeout 120m -v ./chaos/ [-args -chaos.seed=N -chaos.report=FILE]
//
// and record its summary in docs/reliability.md.
func TestChaosClusterFull(t *testing.T) {
	runChaosWith(t, clusterConfig(), 100, 100*time.Minute)
}

// TestChaosSnapshotRestoreFull restores snapshots on the single server
// agent of TestChaos, and nothing else, at least 20 times. Run it with
//
//	go test -tags chaos -run TestChaosSnapshotRestoreFull -timeout 30m -v ./chaos/
func TestChaosSnapshotRestoreFull(t *testing.T) {
	cfg := runConfig
	cfg.kinds = []FaultKind{SnapshotRestore}
	runChaosWith(t, cfg, 20, 20*time.Minute)
}
