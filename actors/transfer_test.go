package actors_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
)

// knows waits until c's lock for resource lists the live candidates ids, each
// with its session: whom a release can hand the key to.
func knows(t *testing.T, c *candidate, resource string, ids ...string) {
	t.Helper()
	for end := time.Now().Add(15 * time.Second); ; {
		st := c.state(resource)
		if !slices.ContainsFunc(ids, func(id string) bool {
			return !slices.ContainsFunc(st.Candidates, func(m messages.Candidate) bool { return m.ID == id && m.Session != "" })
		}) {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s does not know candidates %v for %s: %+v", c.id, ids, resource, st.Candidates)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leaderAndStandby starts a, which leads jobs, then b, which stands by; a
// knows b as a candidate for jobs. configure, if set, changes both one's
// options. It returns a's LeadershipAcquired.
func leaderAndStandby(t *testing.T, prefix string, configure func(*actors.Options)) (a, b *candidate, first messages.LeadershipAcquired) {
	t.Helper()
	options := func(id string) actors.Options {
		opts := withPrefix(fastOptions(t, shared, id), prefix)
		if configure != nil {
			configure(&opts)
		}
		return opts
	}
	a = startCandidate(t, options("a"))
	a.campaign("jobs")
	first = await(a, 15*time.Second, func(m messages.LeadershipAcquired) bool { return true })
	b = startCandidate(t, options("b"))
	b.campaign("jobs")
	await(b, 10*time.Second, func(m messages.LeaderChanged) bool { return m.LeaderID == "a" })
	knows(t, a, "jobs", "b")
	return a, b, first
}

// TestPlannedEndHandsTheKeyOverInOneWrite ends a's term in each planned way:
// the write that ends it is the one that starts b's, so b leads without an
// acquire of its own and with that write's index as its fencing token.
func TestPlannedEndHandsTheKeyOverInOneWrite(t *testing.T) {
	ends := map[string]func(c *candidate){
		"Resign": func(c *candidate) {
			c.system.Root.Send(c.root, &messages.Resign{Resource: "jobs", HoldOff: time.Minute})
		},
		"Withdraw": func(c *candidate) { c.system.Root.Send(c.root, &messages.Withdraw{Resource: "jobs"}) },
		"Stop":     func(c *candidate) { c.stop() },
	}
	for name, end := range ends {
		t.Run(name, func(t *testing.T) {
			prefix := testPrefix(t)
			a, b, first := leaderAndStandby(t, prefix, nil)

			end(a)
			got := await(b, 10*time.Second, func(m messages.LeadershipAcquired) bool { return true })
			e, ok, err := operator(t, shared).Get(ctxFor(t), prefix+"/jobs")
			if err != nil || !ok {
				t.Fatalf("reading the key: %v (exists: %v)", err, ok)
			}
			v, err := consul.DecodeValue(e.Value)
			if err != nil {
				t.Fatal(err)
			}
			if e.Session != got.Session || v.CandidateID != "b" || v.From != "a" {
				t.Fatalf("key held by %s with %+v; want b's session %s, handed over by a", e.Session, v, got.Session)
			}
			if got.FencingToken != e.ModifyIndex || got.FencingToken <= first.FencingToken || e.LockIndex != first.LockIndex+1 {
				t.Fatalf("b leads with token %d, lock index %d; the handing write is index %d, lock index %d; a's token was %d",
					got.FencingToken, e.LockIndex, e.ModifyIndex, first.LockIndex+1, first.FencingToken)
			}
			if name == "Stop" {
				// a's session is destroyed after: b's key is not touched.
				if after, _, err := operator(t, shared).Get(ctxFor(t), prefix+"/jobs"); err != nil || after.ModifyIndex != e.ModifyIndex {
					t.Fatalf("after a stopped the key is %+v (%v); want it as b took it", after, err)
				}
			}
		})
	}
}

// TestHandedKeyNotWantedIsFreed hands the key to a candidate that holds off
// (it resigned the resource without leading it): it frees the key at once,
// for the others, and does not lead.
func TestHandedKeyNotWantedIsFreed(t *testing.T) {
	prefix := testPrefix(t)
	// With a lock-delay, only a release marked as such lets a lead again
	// before the minute is out.
	a, b, first := leaderAndStandby(t, prefix, func(o *actors.Options) { o.LockDelay = time.Minute })
	b.system.Root.Send(b.root, &messages.Resign{Resource: "jobs", HoldOff: time.Minute})
	b.state("jobs") // the resign is in

	a.system.Root.Send(a.root, &messages.Resign{Resource: "jobs"}) // no hold-off: a may lead again
	again := await(a, 10*time.Second, func(m messages.LeadershipAcquired) bool { return true })
	if again.FencingToken <= first.FencingToken {
		t.Fatalf("a leads again with token %d after %d", again.FencingToken, first.FencingToken)
	}
	none(b, 500*time.Millisecond, func(m messages.LeadershipAcquired) bool { return true })
}

// TestKeysHandedOverAfterTheCampaignAreReleased gives a candidate's session a
// key of its prefix that it does not campaign for, as a transfer that crossed
// the end of its campaign would. It releases the key while running, and
// nothing it holds is left to its session's destroy at Stop, whose lock-delay
// would keep everyone out.
func TestKeysHandedOverAfterTheCampaignAreReleased(t *testing.T) {
	prefix := testPrefix(t)
	opts := withPrefix(fastOptions(t, shared, "a"), prefix)
	opts.LockDelay = time.Minute
	a := startCandidate(t, opts)
	a.campaign("jobs")
	acquired := await(a, 15*time.Second, func(m messages.LeadershipAcquired) bool { return true })
	client := consulClient(t, shared)
	other, err := client.CreateSession(ctxFor(t), consul.SessionSpec{Name: "other", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}

	running := prefix + "/handed-while-running"
	if _, err := client.Acquire(ctxFor(t), running, acquired.Session, nil); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if e, _, err := operator(t, shared).Get(ctxFor(t), running); err == nil && e.Session == "" {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the key handed over while running is still held by a's session")
		}
	}

	// Given just as it stops: its watcher, or the stop's last reading,
	// finds it.
	stopping := prefix + "/handed-while-stopping"
	if _, err := client.Acquire(ctxFor(t), stopping, acquired.Session, nil); err != nil {
		t.Fatal(err)
	}
	a.stop()
	for _, key := range []string{running, stopping, prefix + "/jobs"} {
		if _, err := client.Acquire(ctxFor(t), key, other, nil); err != nil {
			t.Fatalf("%s after a stopped: %v", key, err)
		}
	}
}

// TestReleaseOnlyLeavesTheKeyToTheRace: with ReleaseOnly, a planned end only
// releases; the standby acquires the key itself.
func TestReleaseOnlyLeavesTheKeyToTheRace(t *testing.T) {
	prefix := testPrefix(t)
	a, b, _ := leaderAndStandby(t, prefix, func(o *actors.Options) { o.ReleaseOnly = true })

	a.system.Root.Send(a.root, &messages.Resign{Resource: "jobs", HoldOff: time.Minute})
	got := await(b, 10*time.Second, func(m messages.LeadershipAcquired) bool { return true })
	e, _, err := operator(t, shared).Get(ctxFor(t), prefix+"/jobs")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := consul.DecodeValue(e.Value); err != nil || v.From != "" || v.CandidateID != "b" || e.ModifyIndex != got.FencingToken {
		t.Fatalf("key %+v (value %+v, %v); want b's own acquisition, token %d", e, v, err, got.FencingToken)
	}
}

// lateAcquire is a backend whose first acquire of key waits to be sent until
// send is closed, then for its answer to be delivered until answer is closed.
// It is sent as in a batch with other acquires, which goes on when the lock
// gives this one up.
type lateAcquire struct {
	*consul.Client
	key          string
	asked        chan struct{} // closed when the first acquire is asked for
	send, answer chan struct{}
	answered     chan error // Consul's answer to it
	first        sync.Once
}

func (l *lateAcquire) AcquireAsync(ctx context.Context, key, session string, value []byte, done func(consul.Entry, error)) {
	late := false
	if key == l.key {
		l.first.Do(func() { late = true })
	}
	if !late {
		l.Client.AcquireAsync(ctx, key, session, value, done)
		return
	}
	close(l.asked)
	go func() {
		<-l.send
		entry, err := l.Client.Acquire(context.WithoutCancel(ctx), key, session, value)
		l.answered <- err
		<-l.answer
		done(entry, err)
	}()
}

// TestKeyHandedOverWhileOurAcquireFailsIsTaken: b's acquire reaches Consul
// while a leads, and its refusal reaches b after b's watcher has shown a
// handing the key to b. b leads, with the handing write as its token.
func TestKeyHandedOverWhileOurAcquireFailsIsTaken(t *testing.T) {
	prefix := testPrefix(t)
	bOpts := withPrefix(fastOptions(t, shared, "b"), prefix)
	client, err := consul.NewClient(bOpts.ConsulConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	late := &lateAcquire{Client: client, key: prefix + "/jobs", asked: make(chan struct{}),
		send: make(chan struct{}), answer: make(chan struct{}), answered: make(chan error, 1)}
	bOpts.Backend = late
	b := startCandidate(t, bOpts)
	b.campaign("jobs")
	<-late.asked // b saw the key free

	a := startCandidate(t, withPrefix(fastOptions(t, shared, "a"), prefix))
	a.campaign("jobs")
	await(a, 15*time.Second, func(m messages.LeadershipAcquired) bool { return true })
	close(late.send)
	if err := <-late.answered; !errors.Is(err, consul.ErrLockHeld) {
		t.Fatalf("b's acquire while a leads: %v; want ErrLockHeld", err)
	}
	knows(t, a, "jobs", "b")
	a.system.Root.Send(a.root, &messages.Resign{Resource: "jobs", HoldOff: time.Minute})
	await(b, 10*time.Second, func(m messages.LeaderChanged) bool { return m.LeaderID == "b" })
	close(late.answer)

	got := await(b, 10*time.Second, func(m messages.LeadershipAcquired) bool { return true })
	e, ok, err := operator(t, shared).Get(ctxFor(t), prefix+"/jobs")
	if err != nil || !ok || e.Session != got.Session || got.FencingToken != e.ModifyIndex {
		t.Fatalf("b leads with %+v; the key is %+v (exists %v, %v): want b's session, the handing write's index", got, e, ok, err)
	}
}
