package main

import (
	"context"
	"fmt"
	"slices"
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
	operator := exampletest.Client(t, agent)
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
	out.WaitFor(t, "session invalidated", 1)
	out.WaitFor(t, "worker started", workers+1) // the next leadership's
	if err := app.Stop(); err != nil {
		t.Fatal(err)
	}

	terms := leaderships(t, &out)
	if len(terms) < 2 || !slices.Contains(terms, "session invalidated") || terms[len(terms)-1] != "stopped" {
		t.Fatalf("leaderships ended %q; want one by session invalidated, the last by stopped", terms)
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
	if terms := leaderships(t, &leaderOut); terms[len(terms)-1] != "stopped" {
		t.Fatalf("the leader's leaderships ended %q; want the last by stopped", terms)
	}
	standbyOut.WaitFor(t, "worker started", 1)
	leaderships(t, &standbyOut)
}

// milestones are the lines that say what the supervisor and the worker did.
var milestones = []string{"acquired", "lost", "worker started", "worker stopped"}

// leaderships checks what one candidate printed: every leadership (acquired
// with a greater token than the one before, after it was lost) ran exactly one
// worker, started after the acquisition and stopped after the loss. It
// returns how each ended ("" while it lasts).
func leaderships(t *testing.T, out *exampletest.Output) (endings []string) {
	t.Helper()
	lines := out.Lines(milestones...)
	defer func() {
		if t.Failed() {
			t.Logf("printed:\n%s", strings.Join(lines, "\n"))
		}
	}()
	var token uint64
	for i, line := range lines {
		if !strings.HasPrefix(line, "acquired") {
			continue
		}
		prev := token
		if _, err := fmt.Sscanf(line, "acquired "+resource+" (token %d)", &token); err != nil || token <= prev {
			t.Fatalf("line %q: want an acquisition with a token greater than %d", line, prev)
		}
		// The term's lines, in the order they must appear.
		steps := []string{
			fmt.Sprintf("worker started (token %d)", token),
			fmt.Sprintf("lost %s (token %d): ", resource, token),
			fmt.Sprintf("worker stopped (token %d)", token),
		}
		var seen []int // where each step's (only) line is
		for _, step := range steps {
			at := -1
			for j, l := range lines {
				if strings.HasPrefix(l, step) {
					if at >= 0 {
						t.Fatalf("%q printed twice", step)
					}
					at = j
				}
			}
			seen = append(seen, at)
		}
		if seen[1] >= 0 && seen[0] < 0 || seen[2] >= 0 && seen[1] < 0 {
			t.Fatalf("token %d: a step is missing", token)
		}
		if seen[0] >= 0 && seen[0] < i || seen[2] >= 0 && seen[2] < seen[1] {
			t.Fatalf("token %d: out of order", token)
		}
		ending := ""
		if seen[1] >= 0 {
			ending = strings.TrimPrefix(lines[seen[1]], steps[1])
			if next := slices.IndexFunc(lines[i+1:], func(l string) bool { return strings.HasPrefix(l, "acquired") }); next >= 0 && i+1+next < seen[1] {
				t.Fatalf("token %d: acquired again before it was lost", token)
			}
		}
		endings = append(endings, ending)
	}
	return endings
}
