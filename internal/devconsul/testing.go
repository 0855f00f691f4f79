package devconsul

import (
	"context"
	"testing"
	"time"
)

// forTestTimeout covers a first-time build of Consul (about 5 minutes on
// 2 cores) plus the agent's start.
const forTestTimeout = 10 * time.Minute

// ForTest starts an agent for a test and stops it in t.Cleanup.
//
// It never skips: a test that asked for a real Consul and cannot have one
// fails (t.Fatal), so a broken toolchain or build shows up as red, not as a
// quietly shrinking test suite.
func ForTest(tb testing.TB, cfg Config) *Agent {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), forTestTimeout)
	defer cancel()
	a, err := Start(ctx, cfg)
	if err != nil {
		tb.Fatalf("devconsul: cannot start a Consul agent: %v", err)
	}
	tb.Cleanup(func() {
		if err := a.Stop(); err != nil {
			tb.Errorf("devconsul: stopping Consul agent: %v", err)
		}
	})
	return a
}

// ClusterForTest starts a cluster for a test and stops it in t.Cleanup. Like
// ForTest, it never skips.
func ClusterForTest(tb testing.TB, cfg ClusterConfig) *Cluster {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), forTestTimeout)
	defer cancel()
	c, err := StartCluster(ctx, cfg)
	if err != nil {
		tb.Fatalf("devconsul: cannot start a Consul cluster: %v", err)
	}
	tb.Cleanup(func() {
		if err := c.Stop(); err != nil {
			tb.Errorf("devconsul: stopping Consul cluster: %v", err)
		}
	})
	return c
}
