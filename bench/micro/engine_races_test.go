package micro

import (
	"context"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
)

// Races in the lock actor found while building the benchmark harness, each
// forced with an in-memory backend that delays one call. All three are fixed
// (the first two in 91c03a7); these tests guard them.

// events is a test-side candidate: an engine on backend and its events.
type events struct {
	system *actor.ActorSystem
	root   *actor.PID
	ch     chan any
}

func startEngine(t *testing.T, system *actor.ActorSystem, backend actors.Backend, id string) *events {
	t.Helper()
	e := &events{system: system, ch: make(chan any, 1024)}
	opts := actors.DefaultOptions()
	opts.KeyPrefix, opts.SessionTTL, opts.LockDelay, opts.CandidateID = prefix, 30*time.Second, 0, id
	opts.Resources, opts.Backend = []string{resource}, backend
	opts.Observer = listener(func(evt messages.Event) {
		select {
		case e.ch <- evt:
		default:
		}
	})
	props, err := actors.NewProps(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.root = system.Root.Spawn(props)
	t.Cleanup(func() {
		_, _ = system.Root.RequestFuture(e.root, &messages.Stop{}, waitBound).Result()
		_ = system.Root.PoisonFuture(e.root).Wait()
	})
	return e
}

func (e *events) resign(holdOff time.Duration) {
	e.system.Root.Send(e.root, &messages.Resign{Resource: resource, HoldOff: holdOff})
}

func (e *events) state(t *testing.T) messages.State {
	t.Helper()
	res, err := e.system.Root.RequestFuture(e.root, &messages.GetState{Resource: resource}, waitBound).Result()
	if err != nil {
		t.Fatal(err)
	}
	return *res.(*messages.State)
}

// next returns the first event match accepts within d (ok false if none).
func (e *events) next(d time.Duration, match func(any) bool) (any, bool) {
	deadline := time.After(d)
	for {
		select {
		case evt := <-e.ch:
			if match(evt) {
				return evt, true
			}
		case <-deadline:
			return nil, false
		}
	}
}

func acquiredEvent(evt any) bool { _, ok := evt.(messages.LeadershipAcquired); return ok }

func leaderIs(id string) func(any) bool {
	return func(evt any) bool {
		l, ok := evt.(messages.LeaderChanged)
		return ok && l.LeaderID == id
	}
}

// gatedBackend holds every Acquire until the gate opens.
type gatedBackend struct {
	*memBackend
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedBackend) Acquire(ctx context.Context, key, session string, value []byte) (consul.Entry, error) {
	g.entered <- struct{}{}
	<-g.gate
	return g.memBackend.Acquire(ctx, key, session, value)
}

// TestResignDuringAcquireDoesNotLead: a Resign that arrives while the
// candidate's acquire is in flight must keep it from leading for the
// hold-off (the engine used to accept the acquire's result and lead right
// after resigning, for the whole hold-off).
func TestResignDuringAcquireDoesNotLead(t *testing.T) {
	backend := &gatedBackend{memBackend: newMemBackend(), entered: make(chan struct{}, 16), gate: make(chan struct{})}
	system := actor.NewActorSystem(actors.WithZapLogger(nil))
	defer system.Shutdown()
	c := startEngine(t, system, backend, "a")
	select {
	case <-backend.entered:
	case <-time.After(waitBound):
		t.Fatal("no acquire")
	}
	c.resign(time.Hour)
	c.state(t) // the Resign has reached the lock actor (same mailbox, in order)
	close(backend.gate)
	if evt, ok := c.next(time.Second, acquiredEvent); ok {
		t.Fatalf("resigned for an hour, yet leads: %+v", evt)
	}
	if s := c.state(t); s.IsLeader {
		t.Fatalf("resigned for an hour, yet IsLeader: %+v", s)
	}
}

// laggingBackend delivers every prefix read lag late, as a watcher does
// when reading a large prefix on a loaded agent.
type laggingBackend struct {
	*memBackend
	lag time.Duration
}

func (l *laggingBackend) ListPrefix(ctx context.Context, prefix string, index uint64, wait time.Duration) ([]consul.Entry, uint64, error) {
	entries, next, err := l.memBackend.ListPrefix(ctx, prefix, index, wait)
	select {
	case <-time.After(l.lag):
	case <-ctx.Done():
	}
	return entries, next, err
}

// TestLeaderIgnoresStaleKeyState: a leader must not step down because of a
// key state older than its own acquisition. Before 91c03a7 the engine
// compared only the session, so a watcher answer read before the acquisition
// and delivered after it made the leader publish LeadershipLost{key taken}
// although its session held the key.
func TestLeaderIgnoresStaleKeyState(t *testing.T) {
	mem := newMemBackend()
	system := actor.NewActorSystem(actors.WithZapLogger(nil))
	defer system.Shutdown()
	x := startEngine(t, system, mem, "x")
	if _, ok := x.next(waitBound, acquiredEvent); !ok {
		t.Fatal("x never led")
	}
	y := startEngine(t, system, &laggingBackend{memBackend: mem, lag: 300 * time.Millisecond}, "y")
	if _, ok := y.next(waitBound, leaderIs("x")); !ok {
		t.Fatal("y never saw x lead")
	}
	// y leads once and resigns, so that its (lagging) view is "free".
	x.resign(time.Hour)
	if _, ok := y.next(waitBound, acquiredEvent); !ok {
		t.Fatal("y never led")
	}
	y.resign(time.Hour)
	if _, ok := y.next(waitBound, leaderIs("")); !ok {
		t.Fatal("y never saw the key free")
	}
	// x leads and resigns within y's lag; y, still seeing the key free,
	// campaigns, and its acquire lands after x's release.
	x.resign(time.Nanosecond)
	if _, ok := x.next(waitBound, acquiredEvent); !ok {
		t.Fatal("x never led again")
	}
	x.resign(time.Hour)
	if _, ok := x.next(waitBound, leaderIs("")); !ok {
		t.Fatal("x's release not seen")
	}
	y.resign(time.Nanosecond)
	won, ok := y.next(waitBound, acquiredEvent)
	if !ok {
		t.Fatal("y did not lead")
	}
	token := won.(messages.LeadershipAcquired).FencingToken
	if evt, lost := y.next(2*time.Second, func(evt any) bool { _, ok := evt.(messages.LeadershipLost); return ok }); lost {
		t.Fatalf("y leads with token %d and its session holds the key, yet: %+v", token, evt)
	}
}

// slowReleaseBackend answers every Release late.
type slowReleaseBackend struct {
	*memBackend
	delay time.Duration
}

func (s *slowReleaseBackend) Release(ctx context.Context, key, session string, value []byte) error {
	time.Sleep(s.delay)
	return s.memBackend.Release(ctx, key, session, value)
}

// TestResignWithoutHoldOffReleasesBeforeCampaigning: Resign(r, 0) gives
// leadership up and campaigns again at once. Before 91c03a7 the engine
// started the release and the new acquire concurrently: when the acquire
// landed first it re-locked with the same session, the release then freed
// the key, and the candidate published LeadershipAcquired, then
// LeadershipLost{key taken}.
func TestResignWithoutHoldOffReleasesBeforeCampaigning(t *testing.T) {
	backend := &slowReleaseBackend{memBackend: newMemBackend(), delay: 100 * time.Millisecond}
	system := actor.NewActorSystem(actors.WithZapLogger(nil))
	defer system.Shutdown()
	c := startEngine(t, system, backend, "a")
	if _, ok := c.next(waitBound, acquiredEvent); !ok {
		t.Fatal("never led")
	}
	c.resign(0)
	if evt, ok := c.next(2*time.Second, func(evt any) bool {
		l, ok := evt.(messages.LeadershipLost)
		return ok && l.Reason != messages.ReasonResigned
	}); ok {
		t.Fatalf("after Resign(r, 0): %+v", evt)
	}
}
