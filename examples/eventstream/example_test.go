package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/excalibur/consul-elect/examples/internal/exampletest"
)

func TestMain(m *testing.M) { exampletest.Main(m) }

// TestFollowerSeesTheLeaderThenTakesOverWhenItStops runs two candidates: the
// first leads, the second prints it as leader, and when the first stops
// (releasing the key) the second acquires with a greater fencing token.
func TestFollowerSeesTheLeaderThenTakesOverWhenItStops(t *testing.T) {
	agent := exampletest.Agent(t)
	opts := exampletest.Options(t, agent)

	var alphaOut, betaOut exampletest.Output
	alphaOpts, betaOpts := opts, opts
	alphaOpts.CandidateID, betaOpts.CandidateID = "alpha", "beta"
	alpha := exampletest.Run(t, func(ctx context.Context) error { return run(ctx, alphaOpts, &alphaOut) })
	alphaToken := token(t, alphaOut.WaitFor(t, "acquired "+resource, 1)[0])

	beta := exampletest.Run(t, func(ctx context.Context) error { return run(ctx, betaOpts, &betaOut) })
	betaOut.WaitFor(t, fmt.Sprintf("leader of %s: alpha (token %d)", resource, alphaToken), 1)
	if got := betaOut.Lines("acquired"); len(got) != 0 {
		t.Fatalf("beta acquired while alpha leads: %q", got)
	}

	if err := alpha.Stop(); err != nil {
		t.Fatalf("alpha: %v", err)
	}
	wantAlpha := []string{
		fmt.Sprintf("leader of %s: alpha (token %d)", resource, alphaToken),
		fmt.Sprintf("state at shutdown: leader true, token %d", alphaToken),
		fmt.Sprintf("lost %s: stopped (token %d)", resource, alphaToken),
	}
	// It may also print "leader of …: nobody" as it sees its own release.
	if got := alphaOut.Lines(": alpha", "state at", "lost"); strings.Join(got, "\n") != strings.Join(wantAlpha, "\n") {
		t.Fatalf("alpha printed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantAlpha, "\n"))
	}

	betaToken := token(t, betaOut.WaitFor(t, "acquired "+resource, 1)[0])
	if betaToken <= alphaToken {
		t.Fatalf("beta's fencing token %d is not greater than alpha's %d", betaToken, alphaToken)
	}
	betaOut.WaitFor(t, fmt.Sprintf("leader of %s: beta (token %d)", resource, betaToken), 1)
	if err := beta.Stop(); err != nil {
		t.Fatalf("beta: %v", err)
	}
	betaOut.WaitFor(t, fmt.Sprintf("lost %s: stopped (token %d)", resource, betaToken), 1)
	t.Logf("alpha:\n%s\nbeta:\n%s", strings.Join(alphaOut.Lines(), "\n"), strings.Join(betaOut.Lines(), "\n"))
	if errs := append(alphaOut.Lines("error"), betaOut.Lines("error")...); len(errs) > 0 {
		t.Fatalf("election errors: %q", errs)
	}
}

// token reads the fencing token of an "acquired" line.
func token(t *testing.T, acquiredLine string) uint64 {
	t.Helper()
	var resource, session string
	var token uint64
	if _, err := fmt.Sscanf(acquiredLine, "acquired %s token %d, session %s", &resource, &token, &session); err != nil {
		t.Fatalf("cannot read the token of %q: %v", acquiredLine, err)
	}
	return token
}
