package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/excalibur/consul-elect/examples/internal/exampletest"
)

func TestMain(m *testing.M) { exampletest.Main(m) }

// TestWorkStopsWithTheLeadershipAndResumesWithTheNext destroys the leader's
// session (as Consul does when it expires): the work's context ends, the
// candidate leads again with a greater token, and on stop the key is
// released in Consul.
func TestWorkStopsWithTheLeadershipAndResumesWithTheNext(t *testing.T) {
	agent := exampletest.Agent(t)
	opts := exampletest.Options(t, agent)
	var out exampletest.Output
	app := exampletest.Run(t, func(ctx context.Context) error { return run(ctx, opts, &out, generateReports(&out)) })

	out.WaitFor(t, "generating a report", 1)
	operator := agent.Operator()
	ctx, cancel := context.WithTimeout(context.Background(), exampletest.Timeout)
	defer cancel()
	lockKey := opts.KeyPrefix + "/" + resource
	lock, _, err := operator.Get(ctx, lockKey)
	if err != nil || lock.Session == "" {
		t.Fatalf("the lock key: %+v, %v", lock, err)
	}
	leaderships, losses := len(out.Lines("leading")), len(out.Lines("lost"))
	if err := operator.DestroySession(ctx, lock.Session); err != nil {
		t.Fatal(err)
	}
	out.WaitFor(t, "lost", losses+1)
	out.WaitFor(t, "leading", leaderships+1)
	if err := app.Stop(); err != nil {
		t.Fatal(err)
	}

	terms(t, &out)
	if lock, _, err := operator.Get(ctx, lockKey); err != nil || lock.Session != "" {
		t.Fatalf("after stop the lock key is %+v (%v); want it released", lock, err)
	}
}

// TestFailingWorkHandsLeadershipToTheStandby: the leader's work fails, it
// resigns, and the standby leads with a greater token.
func TestFailingWorkHandsLeadershipToTheStandby(t *testing.T) {
	agent := exampletest.Agent(t)
	opts := exampletest.Options(t, agent)
	fail := make(chan struct{})
	failing := func(ctx context.Context, _ uint64) error {
		select {
		case <-fail:
			return errors.New("disk full")
		case <-ctx.Done():
			return nil
		}
	}
	var leaderOut, standbyOut exampletest.Output
	exampletest.Run(t, func(ctx context.Context) error { return run(ctx, opts, &leaderOut, failing) })
	first := token(t, leaderOut.WaitFor(t, "leading", 1)[0])
	standby := exampletest.Run(t, func(ctx context.Context) error {
		return run(ctx, opts, &standbyOut, generateReports(&standbyOut))
	})

	close(fail)
	leaderOut.WaitFor(t, fmt.Sprintf("work failed (disk full); resigning %s", resource), 1)
	second := token(t, standbyOut.WaitFor(t, "leading", 1)[0])
	if second <= first {
		t.Fatalf("the standby's token %d is not greater than the leader's %d", second, first)
	}
	standbyOut.WaitFor(t, "generating a report", 1)
	if err := standby.Stop(); err != nil {
		t.Fatal(err)
	}
}

// terms checks what one candidate printed: each leadership has a greater
// token than the one before, and ends (lost, or resigning) before the next.
func terms(t *testing.T, out *exampletest.Output) {
	t.Helper()
	lines := out.Lines("leading", "lost", "resigning")
	var prev uint64
	leading := false
	for _, line := range lines {
		isLeading := strings.HasPrefix(line, "leading")
		if isLeading == leading {
			t.Fatalf("%q: leaderships and their ends do not alternate; printed:\n%s", line, strings.Join(lines, "\n"))
		}
		if leading = isLeading; leading {
			tok := token(t, line)
			if tok <= prev {
				t.Fatalf("%q: the token is not greater than the previous %d", line, prev)
			}
			prev = tok
		}
	}
}

// token reads the fencing token of a "leading" line.
func token(t *testing.T, line string) uint64 {
	t.Helper()
	var token uint64
	if _, err := fmt.Sscanf(line, "leading "+resource+" with fencing token %d", &token); err != nil {
		t.Fatalf("cannot read the token of %q: %v", line, err)
	}
	return token
}
