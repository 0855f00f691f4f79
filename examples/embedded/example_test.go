package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/excalibur/consul-elect/examples/internal/exampletest"
)

func TestMain(m *testing.M) { exampletest.Main(m) }

// TestWorkerRunsExactlyOncePerLeadership destroys the leader's session (as
// Consul does when it expires): the worker stops with the leadership, and
// starts again, once, with the next one.
func TestWorkerRunsExactlyOncePerLeadership(t *testing.T) {
	agent := exampletest.Agent(t)
	opts := exampletest.Options(t, agent)
	var out exampletest.Output
	app := exampletest.Run(t, func(ctx context.Context) error { return run(ctx, opts, &out) })

	out.WaitFor(t, "worker: generating a report", 1)
	operator := agent.Operator()
	ctx, cancel := context.WithTimeout(context.Background(), exampletest.Timeout)
	defer cancel()
	lock, ok, err := operator.Get(ctx, opts.KeyPrefix+"/"+resource)
	if err != nil || !ok || lock.Session == "" {
		t.Fatalf("the lock key: %+v, exists %t, %v", lock, ok, err)
	}
	workers := len(out.Lines("worker started"))
	if err := operator.DestroySession(ctx, lock.Session); err != nil {
		t.Fatal(err)
	}
	out.WaitFor(t, "worker stopped", workers)
	out.WaitFor(t, "worker started", workers+1) // the next leadership's
	if err := app.Stop(); err != nil {
		t.Fatal(err)
	}
	if terms := leaderships(t, &out); terms < 2 {
		t.Fatalf("%d leaderships; want one ended by the destroyed session and the next", terms)
	}
}

// TestStandbyStartsItsWorkerWhenTheLeaderStops runs two candidates: only the
// leader runs a worker; when it stops, the standby's worker starts.
func TestStandbyStartsItsWorkerWhenTheLeaderStops(t *testing.T) {
	agent := exampletest.Agent(t)
	opts := exampletest.Options(t, agent)
	var leaderOut, standbyOut exampletest.Output
	leader := exampletest.Run(t, func(ctx context.Context) error { return run(ctx, opts, &leaderOut) })
	leaderOut.WaitFor(t, "worker started", 1)

	exampletest.Run(t, func(ctx context.Context) error { return run(ctx, opts, &standbyOut) })
	leaderOut.WaitFor(t, "worker: generating a report", 2) // the standby had time to campaign
	if got := standbyOut.Lines(milestones...); len(got) > 0 {
		// Only allowed if the leader lost its leadership first (a machine
		// too loaded to renew a 2s session); it says so before the key frees.
		if lost := leaderOut.Lines("lost"); len(lost) == 0 {
			t.Fatalf("the standby acted while the leader still led: %q", got)
		}
	}

	if err := leader.Stop(); err != nil {
		t.Fatal(err)
	}
	leaderships(t, &leaderOut)
	standbyOut.WaitFor(t, "worker started", 1)
	leaderships(t, &standbyOut)
}

// milestones are the lines that say what the worker did.
var milestones = []string{"worker started", "worker stopped"}

// leaderships checks what one candidate printed: the worker of each
// leadership started with a greater token than the one before, and stopped
// before the next one started. It returns how many leaderships there were.
func leaderships(t *testing.T, out *exampletest.Output) int {
	t.Helper()
	lines := out.Lines(milestones...)
	defer func() {
		if t.Failed() {
			t.Logf("printed:\n%s", strings.Join(lines, "\n"))
		}
	}()
	var token uint64
	terms := 0
	for i, line := range lines {
		if !strings.HasPrefix(line, "worker started") {
			continue
		}
		prev := token
		if _, err := fmt.Sscanf(line, "worker started (token %d)", &token); err != nil || token <= prev {
			t.Fatalf("line %q: want a worker started with a token greater than %d", line, prev)
		}
		terms++
		if i+1 < len(lines) && lines[i+1] != fmt.Sprintf("worker stopped (token %d)", token) {
			t.Fatalf("token %d: the next line is %q; want its worker stopped", token, lines[i+1])
		}
	}
	return terms
}
