//go:build linux

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/devconsul"
)

func TestReleaseEndsTheLeadershipOnlyOnceConfirmed(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	dir := t.TempDir()
	runCandidate(t, agent, dir, "a")
	first := firstLeader(t, dir)
	release := []string{"release", "--address", agent.URL(), "--resource", "r"}

	code, stdout, stderr := consulElect(t, "n\n", release...)
	if code != exitRuntime || !strings.Contains(stdout, "held by a") || !strings.Contains(stderr, "nothing was changed") {
		t.Fatalf("release answered no: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if terms := events(t, dir, "term"); len(terms) > 0 {
		t.Fatalf("the leader was stopped although release was not confirmed: %+v", terms)
	}

	code, stdout, stderr = consulElect(t, "y\n", release...)
	if code != 0 || !strings.Contains(stdout, "Released excalibur/leader-election/r, held by a") {
		t.Fatalf("release: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// The leader holds off for a second: the key is still free, with its
	// value marked released, so that no standby waits out a lock-delay.
	e, ok, err := agent.Operator().Get(context.Background(), "excalibur/leader-election/r")
	if err != nil || !ok {
		t.Fatalf("reading the released key: ok %v, err %v", ok, err)
	}
	if v, err := consul.DecodeValue(e.Value); err != nil || e.Session != "" || !v.Released || v.CandidateID != "a" {
		t.Fatalf("after release the key is held by %q with value %+v (%v); want free, a's value marked released", e.Session, v, err)
	}
	// The leader learns its key was taken, stops its command, and
	// campaigns again: a new term, with a greater fencing token.
	waitFor(t, 10*time.Second, "the leader to stop its command", func() bool { return len(events(t, dir, "term")) == 1 })
	waitFor(t, 10*time.Second, "a new term", func() bool { return len(events(t, dir, "start")) == 2 })
	if second := events(t, dir, "start")[1]; token(t, second) <= token(t, first) {
		t.Fatalf("fencing token %s after %s", second.FencingToken, first.FencingToken)
	}
	noOverlap(t, dir)
}

func TestReleaseDestroySessionListsEveryKeyTheSessionLoses(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	dir := t.TempDir()
	runCandidate(t, agent, dir, "a")
	first := firstLeader(t, dir)

	// The leader's session also holds a key of another application.
	client, err := consul.NewClient(consul.Config{Address: agent.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Acquire(ctx, "other-app/lock", first.Session, nil); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := consulElect(t, "", "release", "--address", agent.URL(), "--resource", "r", "--destroy-session", "--yes")
	if code != 0 {
		t.Fatalf("release --destroy-session: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, want := range []string{"  excalibur/leader-election/r\n", "  other-app/lock\n", "Destroyed session " + first.Session} {
		if !strings.Contains(stdout, want) {
			t.Fatalf("release --destroy-session printed %q; want it to say %q", stdout, want)
		}
	}
	if _, err := client.SessionInfo(ctx, first.Session); err == nil {
		t.Fatalf("session %s still exists", first.Session)
	}
	waitFor(t, 10*time.Second, "the leader to stop its command", func() bool { return len(events(t, dir, "term")) == 1 })
	// A new session, after the old one's lock-delay.
	waitFor(t, 20*time.Second, "a new term", func() bool { return len(events(t, dir, "start")) == 2 })
	if second := events(t, dir, "start")[1]; second.Session == first.Session {
		t.Fatalf("the new term has the destroyed session %s", second.Session)
	}
	noOverlap(t, dir)
}

func TestReleaseWithNobodyLeadingChangesNothing(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	code, stdout, stderr := consulElect(t, "", "release", "--address", agent.URL(), "--resource", "r")
	if code != 0 || !strings.Contains(stdout, "nobody holds it") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestReleaseRefusesAKeyThatIsNotConsulElects(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	client, err := consul.NewClient(consul.Config{Address: agent.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Another application's lock at the resource's path: held by a session,
	// with flags of its own.
	const key = "excalibur/leader-election/r"
	session, err := client.CreateSession(ctx, consul.SessionSpec{Name: "other-app", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.DestroySession(context.Background(), session) }()
	if _, err := client.Acquire(ctx, key, session, nil); err != nil {
		t.Fatal(err)
	}
	if err := agent.Operator().Put(ctx, key, []byte("other app"), 7); err != nil { // a plain put keeps the lock
		t.Fatal(err)
	}

	code, stdout, stderr := consulElect(t, "", "release", "--address", agent.URL(), "--resource", "r", "--yes")
	if code != exitRuntime || !strings.Contains(stderr, "not a consul-elect key") || !strings.Contains(stderr, "nothing was changed") {
		t.Fatalf("release of a foreign key: exit %d, stdout %q, stderr %q; want 1 and a refusal", code, stdout, stderr)
	}
	if e, ok, err := agent.Operator().Get(ctx, key); err != nil || !ok || e.Session != session || e.Flags != 7 || string(e.Value) != "other app" {
		t.Fatalf("after the refusal the key is %+v (ok %v, err %v); want it untouched", e, ok, err)
	}
}
