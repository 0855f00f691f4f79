package actors_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
)

const resource = "order-processor"

func TestSingleCandidateAcquiresWithFencingTokenOfTheAcquiringWrite(t *testing.T) {
	c := startCandidate(t, fastOptions(t, shared, "alpha"))
	c.campaign(resource)
	got := await[messages.LeadershipAcquired](c, 15*time.Second, nil)

	entry, ok, err := operator(t, shared).Get(ctxFor(t), c.opts.KeyPrefix+"/"+resource)
	if err != nil || !ok {
		t.Fatalf("reading the lock key: ok=%v err=%v", ok, err)
	}
	if entry.Session != got.Session || entry.Flags != consul.KeyFlags {
		t.Fatalf("key held by session %q with flags %x; want %q, %x", entry.Session, entry.Flags, got.Session, consul.KeyFlags)
	}
	if got.FencingToken == 0 || got.FencingToken != entry.ModifyIndex {
		t.Fatalf("fencing token %d; want the acquiring write's index %d", got.FencingToken, entry.ModifyIndex)
	}
	value, err := consul.DecodeValue(entry.Value)
	if err != nil || value.CandidateID != "alpha" || value.AcquiredAt.IsZero() {
		t.Fatalf("key value %q decodes to %+v, %v", entry.Value, value, err)
	}
	if st := c.state(resource); !st.IsLeader || st.FencingToken != got.FencingToken || st.Leader.LeaderID != "alpha" {
		t.Fatalf("state %+v; want leader alpha with token %d", st, got.FencingToken)
	}
}

func TestThreeCandidatesElectExactlyOneLeaderAndTheOthersObserveIt(t *testing.T) {
	opts := fastOptions(t, shared, "")
	var cands []*candidate
	for i := range 3 {
		o := opts
		o.CandidateID = fmt.Sprintf("cand-%d", i)
		c := startCandidate(t, o)
		c.campaign(resource)
		cands = append(cands, c)
	}
	// Every candidate observes the same leader; exactly one says it leads.
	var leader string
	for _, c := range cands {
		seen := await[messages.LeaderChanged](c, 15*time.Second, func(e messages.LeaderChanged) bool { return e.LeaderID != "" })
		if leader == "" {
			leader = seen.LeaderID
		} else if seen.LeaderID != leader {
			t.Fatalf("%s observed leader %s; another observed %s", c.id, seen.LeaderID, leader)
		}
	}
	leaders := 0
	for _, c := range cands {
		if st := c.state(resource); st.IsLeader {
			leaders++
			if c.id != leader {
				t.Fatalf("%s leads but everyone observed %s", c.id, leader)
			}
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders; want exactly 1", leaders)
	}
}

func TestResignHandsLeadershipToAStandby(t *testing.T) {
	opts := fastOptions(t, shared, "first")
	opts.LockDelay = 10 * time.Second // a resign releases explicitly: no lock-delay applies
	first := startCandidate(t, opts)
	first.campaign(resource)
	won := await[messages.LeadershipAcquired](first, 15*time.Second, nil)

	opts.CandidateID = "second"
	second := startCandidate(t, opts)
	second.campaign(resource)
	await[messages.LeaderChanged](second, 15*time.Second, func(e messages.LeaderChanged) bool { return e.LeaderID == "first" })

	first.system.Root.Send(first.root, &messages.Resign{Resource: resource, HoldOff: 30 * time.Second})
	lost := await[messages.LeadershipLost](first, 5*time.Second, nil)
	if lost.Reason != messages.ReasonResigned {
		t.Fatalf("lost with reason %q; want %q", lost.Reason, messages.ReasonResigned)
	}
	took := await[messages.LeadershipAcquired](second, 5*time.Second, nil) // far below the 10s lock-delay
	if took.FencingToken <= won.FencingToken {
		t.Fatalf("new leader's fencing token %d is not above the old %d", took.FencingToken, won.FencingToken)
	}
	await[messages.LeaderChanged](first, 5*time.Second, func(e messages.LeaderChanged) bool { return e.LeaderID == "second" })
	none[messages.LeadershipAcquired](first, time.Second, nil) // hold-off: the resigned one does not retake it
}

func TestSessionDestroyedByOperatorLosesLeadershipAndAStandbyTakesOver(t *testing.T) {
	opts := fastOptions(t, shared, "leader")
	opts.LockDelay = time.Second
	leader := startCandidate(t, opts)
	leader.campaign(resource)
	won := await[messages.LeadershipAcquired](leader, 15*time.Second, nil)
	opts.CandidateID = "standby"
	standby := startCandidate(t, opts)
	standby.campaign(resource)
	await[messages.LeaderChanged](standby, 15*time.Second, func(e messages.LeaderChanged) bool { return e.LeaderID == "leader" })

	if err := operator(t, shared).DestroySession(ctxFor(t), won.Session); err != nil {
		t.Fatal(err)
	}
	lost := await[messages.LeadershipLost](leader, 5*time.Second, nil)
	if lost.Reason != messages.ReasonSessionInvalidated {
		t.Fatalf("lost with reason %q; want %q", lost.Reason, messages.ReasonSessionInvalidated)
	}
	took := await[messages.LeaderChanged](leader, 10*time.Second, func(e messages.LeaderChanged) bool { return e.LeaderID != "" })
	if took.Session == won.Session {
		t.Fatalf("the destroyed session %s still leads", won.Session)
	}
}

func TestLockDelayIsHonouredAndZeroMeansNone(t *testing.T) {
	client := operator(t, shared)
	for _, delay := range []time.Duration{0, 3 * time.Second} {
		t.Run(delay.String(), func(t *testing.T) {
			opts := fastOptions(t, shared, "leader")
			opts.LockDelay = delay
			leader := startCandidate(t, opts)
			leader.campaign(resource)
			won := await[messages.LeadershipAcquired](leader, 15*time.Second, nil)
			info, err := client.SessionInfo(ctxFor(t), won.Session)
			if err != nil || info.LockDelay != delay {
				t.Fatalf("session lock-delay %s (err %v); want %s", info.LockDelay, err, delay)
			}
			opts.CandidateID = "standby"
			standby := startCandidate(t, opts)
			standby.campaign(resource)
			await[messages.LeaderChanged](standby, 15*time.Second, func(e messages.LeaderChanged) bool { return e.LeaderID == "leader" })

			destroyed := time.Now()
			if err := client.DestroySession(ctxFor(t), won.Session); err != nil {
				t.Fatal(err)
			}
			// Either candidate may win (the old leader campaigns on with a new
			// session); neither may win inside the lock-delay.
			await[messages.LeaderChanged](standby, delay+10*time.Second, func(e messages.LeaderChanged) bool {
				return e.LeaderID != "" && e.Session != won.Session
			})
			if waited := time.Since(destroyed); waited < delay {
				t.Fatalf("a new leader acquired %s after the session was destroyed, inside the %s lock-delay", waited, delay)
			}
		})
	}
}

func TestLockKeyDeletedByOperatorLosesLeadership(t *testing.T) {
	c := startCandidate(t, fastOptions(t, shared, "alpha"))
	c.campaign(resource)
	won := await[messages.LeadershipAcquired](c, 15*time.Second, nil)
	if err := operator(t, shared).Delete(ctxFor(t), c.opts.KeyPrefix+"/"+resource); err != nil {
		t.Fatal(err)
	}
	lost := await[messages.LeadershipLost](c, 5*time.Second, nil)
	if lost.Reason != messages.ReasonKeyDeleted {
		t.Fatalf("lost with reason %q; want %q", lost.Reason, messages.ReasonKeyDeleted)
	}
	again := await[messages.LeadershipAcquired](c, 10*time.Second, nil)
	if again.FencingToken <= won.FencingToken {
		t.Fatalf("token after the key was recreated %d; want above %d (LockIndex restarts, the token must not)", again.FencingToken, won.FencingToken)
	}
	if again.LockIndex != 1 {
		t.Fatalf("LockIndex %d; want 1 for a recreated key", again.LockIndex)
	}
}

func TestForeignKeyAtTheLockPathIsAConflictNotATakeover(t *testing.T) {
	opts := fastOptions(t, shared, "alpha")
	key := opts.KeyPrefix + "/" + resource
	client := operator(t, shared)
	if err := client.Put(ctxFor(t), key, []byte("someone else's"), 7); err != nil {
		t.Fatal(err)
	}
	c := startCandidate(t, opts)
	c.campaign(resource)
	failed := await[messages.ElectionError](c, 15*time.Second, nil)
	if !errors.Is(failed.Err, consul.ErrConflict) || failed.Resource != resource {
		t.Fatalf("error %+v; want ErrConflict for %s", failed, resource)
	}
	none[messages.LeadershipAcquired](c, 2*time.Second, nil)
	entry, _, err := client.Get(ctxFor(t), key)
	if err != nil || string(entry.Value) != "someone else's" || entry.Flags != 7 || entry.Session != "" {
		t.Fatalf("the foreign key changed: %+v, %v", entry, err)
	}
	// Once the path is free, the candidate campaigns as usual.
	if err := client.Delete(ctxFor(t), key); err != nil {
		t.Fatal(err)
	}
	await[messages.LeadershipAcquired](c, 10*time.Second, nil)
}

func TestManyResourcesShareOneSession(t *testing.T) {
	c := startCandidate(t, fastOptions(t, shared, "many"))
	const n = 50
	for i := range n {
		c.campaign(fmt.Sprintf("res-%02d", i))
	}
	sessions := map[string]bool{}
	for range n {
		won := await[messages.LeadershipAcquired](c, 30*time.Second, nil)
		sessions[won.Session] = true
	}
	if len(sessions) != 1 {
		t.Fatalf("%d sessions for %d resources; want 1", len(sessions), n)
	}
	entries, _, err := operator(t, shared).ListPrefix(ctxFor(t), c.opts.KeyPrefix+"/", 0, 0)
	if err != nil || len(entries) != n {
		t.Fatalf("%d keys under the prefix (err %v); want %d", len(entries), err, n)
	}
}

func TestStopReleasesKeysAndDestroysTheSession(t *testing.T) {
	opts := fastOptions(t, shared, "stopper")
	opts.LockDelay = 10 * time.Second
	c := startCandidate(t, opts)
	c.campaign(resource)
	won := await[messages.LeadershipAcquired](c, 15*time.Second, nil)
	opts.CandidateID = "standby"
	standby := startCandidate(t, opts)
	standby.campaign(resource)
	await[messages.LeaderChanged](standby, 15*time.Second, func(e messages.LeaderChanged) bool { return e.LeaderID == "stopper" })

	c.stop()
	lost := await[messages.LeadershipLost](c, time.Second, nil)
	if lost.Reason != messages.ReasonStopped {
		t.Fatalf("lost with reason %q; want %q", lost.Reason, messages.ReasonStopped)
	}
	if _, err := operator(t, shared).SessionInfo(ctxFor(t), won.Session); !errors.Is(err, consul.ErrSessionGone) {
		t.Fatalf("session after stop: %v; want ErrSessionGone", err)
	}
	await[messages.LeadershipAcquired](standby, 5*time.Second, nil) // released, so no 10s lock-delay
}
