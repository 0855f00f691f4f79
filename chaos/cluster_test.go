//go:build linux

package chaos

import (
	"testing"
	"time"
)

// clusterConfig is the cluster run's: the chaos run's candidates and flags,
// on three Consul servers and a client agent, with the faults of consul
// itself (a raft leader killed, a server cut off, a snapshot restored) and
// the candidate faults that mean the same there (a kill, a session
// destroyed).
func clusterConfig() config {
	cfg := runConfig
	cfg.servers, cfg.kinds = 3, ClusterFaultKinds
	return cfg
}

// TestChaosCluster is the short cluster variant that `go test` runs: every
// kind of ClusterFaultKinds twice, in about three minutes, with the
// assertions of TestChaos. The full run is TestChaosClusterFull (build tag
// chaos).
func TestChaosCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos run takes minutes; not with -short")
	}
	runChaosWith(t, clusterConfig(), 6, 6*time.Minute)
}
