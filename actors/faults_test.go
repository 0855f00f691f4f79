package actors_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/devconsul"
	"github.com/excalibur/consul-elect/messages"
)

func TestAgentRestartReestablishesLeadership(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{}) // -dev: a restart loses every session and key
	c := startCandidate(t, fastOptions(t, agent, "alpha"))
	c.campaign(resource)
	won := await[messages.LeadershipAcquired](c, 15*time.Second, nil)

	if err := agent.Restart(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	lost := await[messages.LeadershipLost](c, 15*time.Second, nil)
	t.Logf("lost leadership over the restart: %s", lost.Reason)
	again := await[messages.LeadershipAcquired](c, 30*time.Second, nil)
	if again.Session == won.Session {
		t.Fatalf("leads again with the old session %s, which the restarted agent cannot know", won.Session)
	}
	entry, ok, err := operator(t, agent).Get(ctxFor(t), c.opts.KeyPrefix+"/"+resource)
	if err != nil || !ok || entry.Session != again.Session {
		t.Fatalf("after the restart the key is %+v (ok %v, err %v); want held by %s", entry, ok, err, again.Session)
	}
}

func TestSessionInAnotherDatacenter(t *testing.T) {
	dc2 := devconsul.ForTest(t, devconsul.Config{Datacenter: "dc2", JoinWAN: []string{shared.SerfWANAddr()}})
	opts := fastOptions(t, shared, "remote") // talks to the dc1 agent …
	opts.Datacenter = "dc2"                  // … and elects in dc2
	c := startCandidate(t, opts)
	c.campaign(resource)
	won := await[messages.LeadershipAcquired](c, 30*time.Second, nil)

	key := opts.KeyPrefix + "/" + resource
	if entry, ok, err := operator(t, dc2).Get(ctxFor(t), key); err != nil || !ok || entry.Session != won.Session {
		t.Fatalf("in dc2 the key is %+v (ok %v, err %v); want held by %s", entry, ok, err, won.Session)
	}
	if _, ok, err := operator(t, shared).Get(ctxFor(t), key); err != nil || ok {
		t.Fatalf("the key exists in dc1 too (err %v)", err)
	}
	info, err := operator(t, dc2).SessionInfo(ctxFor(t), won.Session)
	if err != nil || info.Node != dc2.NodeName() {
		t.Fatalf("session node %q (err %v); want dc2's node %q", info.Node, err, dc2.NodeName())
	}

	opts.CandidateID, opts.HealthCheckID = "remote-checked", "serfHealth"
	refused := startCandidate(t, opts)
	failed := await[messages.ElectionError](refused, 15*time.Second, nil)
	if !errors.Is(failed.Err, consul.ErrRejected) {
		t.Fatalf("HealthCheckID with a remote datacenter: %v; want ErrRejected", failed.Err)
	}
}

// flakyBackend fails the first acquires of one key with a transient error.
type flakyBackend struct {
	actors.Backend
	key      string
	failures int
	mu       sync.Mutex
	attempts []time.Time
}

func (f *flakyBackend) Acquire(ctx context.Context, key, session string, value []byte) (consul.Entry, error) {
	if key == f.key {
		f.mu.Lock()
		f.attempts = append(f.attempts, time.Now())
		n := len(f.attempts)
		f.mu.Unlock()
		if n <= f.failures {
			return consul.Entry{}, errors.New("injected: connection reset")
		}
	}
	return f.Backend.Acquire(ctx, key, session, value)
}

func TestLockErrorRestartsOnlyThatLockWithBackoff(t *testing.T) {
	opts := fastOptions(t, shared, "alpha")
	client, err := consul.NewClient(consul.Config{Address: shared.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	flaky := &flakyBackend{Backend: client, key: opts.KeyPrefix + "/flaky", failures: 3}
	opts.Backend = flaky
	c := startCandidate(t, opts)
	c.campaign("steady")
	await[messages.LeadershipAcquired](c, 15*time.Second, func(e messages.LeadershipAcquired) bool { return e.Resource == "steady" })
	c.campaign("flaky")
	await[messages.LeadershipAcquired](c, 30*time.Second, func(e messages.LeadershipAcquired) bool { return e.Resource == "flaky" })

	flaky.mu.Lock()
	attempts := append([]time.Time(nil), flaky.attempts...)
	flaky.mu.Unlock()
	if len(attempts) != 4 {
		t.Fatalf("%d acquire attempts; want 3 failures and 1 success", len(attempts))
	}
	// Restarts back off: each wait is longer than the one before.
	for i := 2; i < len(attempts); i++ {
		if gap, prev := attempts[i].Sub(attempts[i-1]), attempts[i-1].Sub(attempts[i-2]); gap <= prev {
			t.Errorf("wait before attempt %d was %s, not longer than the previous %s", i+1, gap, prev)
		}
	}
	if st := c.state("steady"); !st.IsLeader {
		t.Fatal("the healthy resource lost leadership while another lock actor restarted")
	}
	none[messages.LeadershipLost](c, 500*time.Millisecond, func(e messages.LeadershipLost) bool { return e.Resource == "steady" })
}

func TestASlowEventStreamSubscriberDoesNotDelayAStepDown(t *testing.T) {
	opts := fastOptions(t, shared, "alpha")
	opts.LockDelay = 5 * time.Second // no new term right after the destroy
	c := startCandidate(t, opts)
	c.campaign(resource)
	won := await[messages.LeadershipAcquired](c, 15*time.Second, nil)

	// A subscriber that blocks on the next event for 10s, as a slow user's
	// would; the EventStream runs subscribers on the publisher's goroutine.
	release := make(chan struct{})
	defer close(release)
	c.system.EventStream.Subscribe(func(evt any) {
		if _, ok := evt.(messages.LeadershipLost); ok {
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
	})
	if err := operator(t, shared).DestroySession(ctxFor(t), won.Session); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for c.state(resource).IsLeader {
		if time.Now().After(deadline) {
			t.Fatal("still leader 3s after its session was destroyed, while a subscriber was blocked")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Consul keeps lock-delays apart from its state, in memory, and can forget
// one: a snapshot restore drops them all. A follower waits out the last
// holder's lock-delay itself, so that a leader cut off from Consul still
// has until its fence window closes.
func TestAFollowerWaitsOutALockDelayConsulForgot(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	opts := fastOptions(t, agent, "alpha")
	opts.SessionTTL = 10 * time.Second
	opts.LockDelay = 6 * time.Second
	alpha, cut := startOnDeadBackend(t, opts, consulClient(t, agent))
	alpha.campaign(resource)
	won := await[messages.LeadershipAcquired](alpha, 15*time.Second, nil)

	opts.CandidateID = "beta"
	held := &heldAcquires{Client: consulClient(t, agent), open: make(chan struct{})}
	opts.Backend = held
	beta := startCandidate(t, opts)
	beta.campaign(resource)
	await[messages.LeaderChanged](beta, 15*time.Second, func(e messages.LeaderChanged) bool { return e.Session == won.Session })

	// alpha cannot hear that its session ends: it leads until its fence
	// window closes, as the lock-delay expects.
	cut.dead.Store(true)
	destroyed := time.Now()
	if err := operator(t, agent).DestroySession(ctxFor(t), won.Session); err != nil {
		t.Fatal(err)
	}
	await[messages.LeaderChanged](beta, 5*time.Second, func(e messages.LeaderChanged) bool { return e.Session == "" })
	// The same state, restored: nothing a watch could see, but Consul no
	// longer knows the lock-delay.
	snapshot, err := agent.Snapshot(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Restore(ctxFor(t), snapshot); err != nil {
		t.Fatal(err)
	}
	close(held.open) // beta tries only now
	took := await[messages.LeadershipAcquired](beta, 30*time.Second, nil)
	lost := await[messages.LeadershipLost](alpha, 15*time.Second, nil)
	if took.At.Before(destroyed.Add(opts.LockDelay)) {
		t.Errorf("beta led %s after alpha's session was destroyed, inside its lock-delay of %s", took.At.Sub(destroyed), opts.LockDelay)
	}
	if took.At.Before(lost.At) {
		t.Errorf("two leaders: beta led %s before alpha stepped down", lost.At.Sub(took.At))
	}
}

// heldAcquires keeps a candidate's acquires from Consul until open is closed,
// as on a machine too busy for it to try sooner.
type heldAcquires struct {
	*consul.Client
	open chan struct{}
}

func (h *heldAcquires) Acquire(ctx context.Context, key, session string, value []byte) (consul.Entry, error) {
	select {
	case <-h.open:
		return h.Client.Acquire(ctx, key, session, value)
	case <-ctx.Done():
		return consul.Entry{}, ctx.Err()
	}
}

func (h *heldAcquires) AcquireAsync(ctx context.Context, key, session string, value []byte, done func(consul.Entry, error)) {
	go func() {
		select {
		case <-h.open:
			h.Client.AcquireAsync(ctx, key, session, value, done)
		case <-ctx.Done():
			done(consul.Entry{}, ctx.Err())
		}
	}()
}
