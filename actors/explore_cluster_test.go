package actors_test

import (
	"os"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/internal/devconsul"
	"github.com/excalibur/consul-elect/messages"
)

func TestExploreClient(t *testing.T) {
	cl := devconsul.ClusterForTest(t, devconsul.ClusterConfig{Servers: 3, Clients: 2})
	tl := newTimeline()
	prefix := testPrefix(t)
	ld, _ := time.ParseDuration(os.Getenv("LD"))
	alpha := clusterCandidate(t, cl.Clients[0], "alpha", prefix, ld, tl)
	await[messages.LeadershipAcquired](alpha, 15*time.Second, nil)
	beta := clusterCandidate(t, cl.Clients[1], "beta", prefix, ld, tl)
	await[messages.LeaderChanged](beta, 15*time.Second, func(e messages.LeaderChanged) bool { return e.LeaderID == "alpha" })
	// wait for a renewal
	first := tl.lastRenew("alpha")
	for tl.lastRenew("alpha") == first {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	t0 := func() string { return time.Since(start).Round(10 * time.Millisecond).String() }
	agent := cl.Clients[0]
	down, _ := time.ParseDuration(os.Getenv("DOWN"))
	switch os.Getenv("MODE") {
	case "restart":
		if err := agent.Restart(t.Context()); err != nil {
			t.Fatal(err)
		}
	case "kill":
		if err := agent.Kill(); err != nil {
			t.Fatal(err)
		}
	case "shutdown":
		if err := agent.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%s %s done (renewed %s before)", t0(), os.Getenv("MODE"), start.Sub(first))
	if os.Getenv("MODE") != "restart" {
		sampleLeaders(t, down, alpha, beta)
		if err := agent.Restart(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s restarted", t0())
	}
	sampleLeaders(t, 15*time.Second, alpha, beta)
	t.Logf("start %s timeline %s", stamp(start), tl)
	t.Logf("overlaps: %v", tl.overlaps())
	t.Logf("errors: %v", tl.errors)
}
