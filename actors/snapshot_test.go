package actors_test

import (
	"testing"
	"time"

	"github.com/excalibur/consul-elect/internal/devconsul"
	"github.com/excalibur/consul-elect/messages"
)

// TestWatchersFollowASnapshotRestore restores a Consul snapshot taken while
// another candidate led: Consul's state, and the indexes its blocking
// queries report, go back to the snapshot's. The restored key is held by
// the first leader's session, which is still alive (a candidate keeps its
// session from term to term) but leads no more.
//
// What Consul 1.14.11 does, as observed here: a blocking query in flight
// answers at once with the state it was reading before the restore (the
// abandoned state store) and the index it waited at, as if nothing had
// changed; a blocking query at that index then waits its whole wait,
// however much the restore changed. The key watchers must read again at
// once: the leader must see that the key is not its own any more, and the
// first leader that its session holds the key again. Exactly one leads
// within the failover bound, with a fencing token above every earlier one
// (a new acquisition gets a raft index past the restored snapshot's).
func TestWatchersFollowASnapshotRestore(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	const ttl, lockDelay = 3 * time.Second, time.Second
	tl := newTimeline()
	prefix := testPrefix(t)
	var cands []*candidate
	for _, id := range []string{"a", "b", "c"} {
		opts := fastOptions(t, agent, id)
		opts.KeyPrefix, opts.SessionTTL, opts.LockDelay, opts.Observer = prefix, ttl, lockDelay, tl.observer(id)
		c := startCandidate(t, opts)
		c.campaign(resource)
		cands = append(cands, c)
	}
	first := awaitLeader(t, 15*time.Second, cands...)
	// Every candidate has its session, and knows who leads, before the
	// snapshot.
	for _, c := range cands {
		await[messages.LeaderChanged](c, 15*time.Second, func(e messages.LeaderChanged) bool { return e.LeaderID == first.id })
	}
	snapshot, err := agent.Snapshot(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	firstSpans := tl.of(first.id)
	snapToken := firstSpans[len(firstSpans)-1].token

	// Handovers, so that the index moves on and another candidate leads
	// when the snapshot is restored.
	leader := first
	for handovers := 0; handovers < 2 || leader == first; handovers++ {
		old := leader
		old.system.Root.Send(old.root, &messages.Resign{Resource: resource, HoldOff: 2 * time.Second})
		until(t, 15*time.Second, "handed over", cands, func() bool {
			leader = leaderNow(t, cands...)
			return leader != nil && leader != old
		})
	}
	spans := tl.of(leader.id)
	before := spans[len(spans)-1]
	t.Logf("snapshot taken while %s led with token %d; %s leads with token %d when it is restored", first.id, snapToken, leader.id, before.token)

	if err := agent.Restore(ctxFor(t), snapshot); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	if session := holder(t, agent, prefix); session != firstSpans[len(firstSpans)-1].session {
		t.Fatalf("after the restore the key is held by %q; want %s's session %s", session, first.id, firstSpans[len(firstSpans)-1].session)
	}
	// One candidate leads again, the one whose session Consul says holds
	// the key: the first leader, whose session the restore gave the key
	// back to, unless it is still in its resign's hold-off and lets it go.
	bound := 2*ttl + lockDelay + 3*time.Second
	var now *candidate
	until(t, bound, "one leader after the restore", cands, func() bool {
		now = leaderNow(t, cands...)
		if now == nil {
			return false
		}
		spans := tl.of(now.id)
		return spans[len(spans)-1].from.After(restored) && holder(t, agent, prefix) == spans[len(spans)-1].session
	})
	spans = tl.of(now.id)
	again := spans[len(spans)-1]
	t.Logf("after the restore %s leads after %s with token %d (the restored key's index is %d)",
		now.id, again.from.Sub(restored).Round(time.Millisecond), again.token, snapToken)
	if again.token <= before.token {
		t.Errorf("the leader after the restore has token %d, not above the last one before it (%d)", again.token, before.token)
	}
	// The restore ended the term without a lock-delay; the candidates left
	// the key alone for LockDelay instead, the time the old leader had to
	// stop its work.
	if wait := again.from.Sub(restored); wait < lockDelay {
		t.Errorf("%s led %s after the restore, before LockDelay (%s) had passed", now.id, wait.Round(time.Millisecond), lockDelay)
	}
	tl.checkOneLeader(t)
}

// TestARestoreDuringAHoldOffDoesNotEndTheCampaign: a lone candidate resigns
// with a hold-off, and a snapshot from its term is restored meanwhile, which
// gives the key back to its session. It must not take the key before its
// hold-off ends, and must lead again once it has.
func TestARestoreDuringAHoldOffDoesNotEndTheCampaign(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	const holdOff = 4 * time.Second
	opts := fastOptions(t, agent, "a")
	opts.SessionTTL, opts.LockDelay = 3*time.Second, time.Second
	a := startCandidate(t, opts)
	a.campaign(resource)
	first := await[messages.LeadershipAcquired](a, 15*time.Second, nil)
	snapshot, err := agent.Snapshot(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	a.system.Root.Send(a.root, &messages.Resign{Resource: resource, HoldOff: holdOff})
	await[messages.LeadershipLost](a, 5*time.Second, nil)
	resigned := time.Now()
	if err := agent.Restore(ctxFor(t), snapshot); err != nil {
		t.Fatal(err)
	}
	again := await[messages.LeadershipAcquired](a, holdOff+10*time.Second, nil)
	if again.At.Before(resigned.Add(holdOff - 100*time.Millisecond)) {
		t.Errorf("led again %s after resigning, within its hold-off of %s", again.At.Sub(resigned).Round(time.Millisecond), holdOff)
	}
	if again.FencingToken <= first.FencingToken {
		t.Errorf("token %d after the restore, not above %d", again.FencingToken, first.FencingToken)
	}
}
