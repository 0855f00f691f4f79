package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/examples/internal/exampletest"
)

func TestMain(m *testing.M) { exampletest.Main(m) }

// TestWriteAfterLosingTheLockIsRefusedAndChangesNothing runs the example to
// its end: three guarded writes land, the fourth, after the session is gone,
// is refused, and Consul still holds the third report.
func TestWriteAfterLosingTheLockIsRefusedAndChangesNothing(t *testing.T) {
	agent := exampletest.Agent(t)
	opts := exampletest.Options(t, agent)
	reportKey := opts.KeyPrefix + "-data/report"
	var out exampletest.Output
	if err := exampletest.Run(t, func(ctx context.Context) error { return run(ctx, opts, reportKey, &out) }).Wait(); err != nil {
		t.Fatal(err)
	}

	var token uint64
	lines := out.Lines()
	if len(lines) == 0 {
		t.Fatal("the example printed nothing")
	}
	if _, err := fmt.Sscanf(lines[0], "wrote \"report #1 by the leader with fencing token %d\"", &token); err != nil {
		t.Fatalf("first line %q: %v", lines[0], err)
	}
	report := func(n int) string { return fmt.Sprintf("report #%d by the leader with fencing token %d", n, token) }
	want := []string{
		fmt.Sprintf("wrote %q", report(1)),
		fmt.Sprintf("wrote %q", report(2)),
		fmt.Sprintf("wrote %q", report(3)),
		"session destroyed behind the leader's back",
		"write #4 refused: ",
		"the engine saw it too: leadership lost",
	}
	if len(lines) != len(want) {
		t.Fatalf("printed\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Fatalf("line %d is %q; want %q", i+1, lines[i], want[i])
		}
	}

	operator := agent.Operator()
	ctx, cancel := context.WithTimeout(context.Background(), exampletest.Timeout)
	defer cancel()
	entry, ok, err := operator.Get(ctx, reportKey)
	if err != nil || !ok {
		t.Fatalf("reading %s: exists %t, %v", reportKey, ok, err)
	}
	if string(entry.Value) != report(3) {
		t.Fatalf("%s holds %q; want the last accepted write %q", reportKey, entry.Value, report(3))
	}
}

// TestWaitsWhileAnotherLeadsAndStopsCleanly: another candidate holds the
// lock, so the example waits without writing; cancelling it (SIGINT) returns
// at once.
func TestWaitsWhileAnotherLeadsAndStopsCleanly(t *testing.T) {
	agent := exampletest.Agent(t)
	opts := exampletest.Options(t, agent)
	reportKey := opts.KeyPrefix + "-data/report"
	ctx, cancel := context.WithTimeout(context.Background(), exampletest.Timeout)
	defer cancel()
	other, err := consulelect.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Stop(ctx) }() // before the agent stops
	if err := other.Campaign(resource, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := other.AwaitLeadership(ctx, resource); err != nil {
		t.Fatal(err)
	}

	var out exampletest.Output
	waiter := exampletest.Run(t, func(ctx context.Context) error { return run(ctx, opts, reportKey, &out) })
	time.Sleep(time.Second) // time to campaign, and to write if it wrongly would
	if err := waiter.Stop(); err != nil {
		t.Fatal(err)
	}
	if lines := out.Lines(); len(lines) != 0 {
		t.Fatalf("the waiting candidate printed %q", lines)
	}
	if _, ok, err := agent.Operator().Get(ctx, reportKey); err != nil || ok {
		t.Fatalf("%s exists (%t, %v); nobody should have written it", reportKey, ok, err)
	}
}
