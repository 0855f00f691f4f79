package devconsul

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/internal/leakcheck"
	"go.uber.org/goleak"
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

// Main is the whole TestMain of a test package whose tests share one dev
// agent: it starts the agent into *agent, runs the tests, stops the agent and
// fails the run if any goroutine outlived the tests (protoactor's dead-letter
// throttle aside, see internal/leakcheck).
//
//	var agent *devconsul.Agent
//	func TestMain(m *testing.M) { devconsul.Main(m, &agent) }
func Main(m *testing.M, agent **Agent) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	a, err := Start(ctx, Config{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the Consul dev agent:", err)
		os.Exit(1)
	}
	*agent = a
	code := m.Run()
	_ = a.Stop()
	if code == 0 {
		if err := goleak.Find(leakcheck.Options()...); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			code = 1
		}
	}
	os.Exit(code)
}
