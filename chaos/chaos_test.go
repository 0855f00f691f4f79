//go:build linux

package chaos

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestChaos is the short variant that `go test ./...` runs: at least 20
// forced transitions, every fault kind at least twice, in about three
// minutes. It asserts no overlap outside a freeze, strictly increasing
// tokens, no stale write accepted, every fault recovered within a generous
// bound, and nothing left running. The full run is TestChaosFull (build tag
// chaos).
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos run takes minutes; not with -short")
	}
	runChaos(t, 20, 6*time.Minute)
}

// TestChaosCatchesOverlapWithoutLockDelay is the suite's control: it breaks
// the rule that lock-delay covers the kill grace, and the checker must see
// the overlap that follows. With --lock-delay 0, when an operator destroys
// the leader's session another candidate leads at once, while the old
// leader's command (slow to stop: it ignores SIGTERM) runs on for the kill
// grace. Tokens still increase and the store still refuses the old token.
func TestChaosCatchesOverlapWithoutLockDelay(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul and five candidates; not with -short")
	}
	all := map[string]bool{}
	for i := 1; i <= candidates; i++ {
		all[fmt.Sprintf("c%d", i)] = true
	}
	cfg := config{bounds: Bounds{TTL: 3 * time.Second, LockDelay: 0, KillGrace: 300 * time.Millisecond, Margin: time.Second}, slowToStop: all}
	c := newCluster(t, cfg, seed(t))
	anyLeader := func(leader) bool { return true }
	// The old leader may win again with a new session (then its new command
	// waits for the old one): try a few times.
	for seq := 1; seq <= 6; seq++ {
		l, err := c.waitSteady(time.Minute, "steady leader", anyLeader)
		if err != nil {
			t.Fatal(err)
		}
		f, err := c.inject(seq, planned{kind: DestroySession}, l)
		c.faults = append(c.faults, f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.waitSteady(time.Minute, "new leader", func(n leader) bool { return n.token > f.Token }); err != nil {
			t.Fatal(err)
		}
		if c.overlapSeen() {
			break
		}
	}
	report := c.finish()
	if len(report.Violations) == 0 {
		t.Fatal("with lock-delay 0 and commands that outlive SIGTERM, the checker saw no overlap: it cannot fail")
	}
	t.Logf("caught as it should be: %s", report.Violations[0])
	if len(report.TokenErrors) > 0 || len(report.StaleAccepts) > 0 {
		t.Errorf("tokens and the store must hold even here: %v, %v", report.TokenErrors, report.StaleAccepts)
	}
	if report.Rejected == 0 {
		t.Error("the old command overlapped the new one without a write refused: the store was not in the way")
	}
}

func TestPlanIsReplayableAndMeetsEveryKind(t *testing.T) {
	a, b := plan(42, 30, runBounds), plan(42, 30, runBounds)
	if !slices.Equal(a, b) {
		t.Fatal("the same seed planned different faults")
	}
	if slices.Equal(a, plan(43, 30, runBounds)) {
		t.Fatal("another seed planned the same faults")
	}
	// Every kind once in each round of len(FaultKinds).
	for round := 0; round+len(FaultKinds) <= len(a); round += len(FaultKinds) {
		seen := map[FaultKind]bool{}
		for _, p := range a[round : round+len(FaultKinds)] {
			seen[p.kind] = true
		}
		if len(seen) != len(FaultKinds) {
			t.Fatalf("round at %d meets %d kinds: %v", round, len(seen), seen)
		}
	}
	for _, p := range a {
		switch {
		case p.kind == LatencySpike && (p.hold < 2*time.Second || p.latency < 50*time.Millisecond):
			t.Errorf("latency spike %s", p.params())
		case (p.kind.Freezes() || p.kind == CutLeader) && p.hold <= runBounds.TTL:
			t.Errorf("%s for %s, not longer than the TTL", p.kind, p.hold)
		}
	}
}
