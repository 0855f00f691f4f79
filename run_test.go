package consulelect_test

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
)

// stubbornness is how long a stubborn work function goes on after its
// context was cancelled.
const stubbornness = 2 * time.Second

// workLog records when each candidate's work started and returned.
type workLog struct {
	mu       sync.Mutex
	started  map[string][]time.Time
	returned map[string][]time.Time
	wake     chan struct{}
}

func newWorkLog() *workLog {
	return &workLog{started: map[string][]time.Time{}, returned: map[string][]time.Time{}, wake: make(chan struct{}, 100)}
}

// work is a work function for candidate who that runs until its context is
// cancelled, then for stubborn more.
func (w *workLog) work(who string, stubborn time.Duration) func(context.Context, *consulelect.Leadership) error {
	return func(ctx context.Context, lead *consulelect.Leadership) error {
		w.record(w.started, who)
		<-ctx.Done()
		time.Sleep(stubborn)
		w.record(w.returned, who)
		return nil
	}
}

func (w *workLog) record(m map[string][]time.Time, who string) {
	w.mu.Lock()
	m[who] = append(m[who], time.Now())
	w.mu.Unlock()
	w.wake <- struct{}{}
}

// await waits until who's work has started (returned: returned) n times.
func (w *workLog) await(t *testing.T, m map[string][]time.Time, who string, n int, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		times := m[who]
		w.mu.Unlock()
		if len(times) >= n {
			return times[n-1]
		}
		select {
		case <-w.wake:
		case <-deadline:
			t.Fatalf("%s: fewer than %d events within %s", who, n, timeout)
		}
	}
}

// TestStandbyStartsOnlyAfterTheLeadersWorkReturned ends a term voluntarily
// while the leader's work ignores cancellation for two seconds: the key is
// released only after that work returned, so the standby's work starts after.
func TestStandbyStartsOnlyAfterTheLeadersWorkReturned(t *testing.T) {
	ends := []struct {
		name    string
		end     func(t *testing.T, a *consulelect.Election, cancelRun context.CancelFunc)
		wantRun error
	}{
		{"Resign", func(t *testing.T, a *consulelect.Election, _ context.CancelFunc) {
			if err := a.Resign("jobs", time.Minute); err != nil {
				t.Error(err)
			}
		}, nil},
		{"Stop", func(t *testing.T, a *consulelect.Election, _ context.CancelFunc) {
			go func() {
				if err := a.Stop(context.Background()); err != nil {
					t.Error(err)
				}
			}()
		}, consulelect.ErrStopped},
		{"RunContextDone", func(_ *testing.T, _ *consulelect.Election, cancelRun context.CancelFunc) { cancelRun() }, context.Canceled},
	}
	for _, tc := range ends {
		t.Run(tc.name, func(t *testing.T) {
			log := newWorkLog()
			a, b := start(t, options(t, "a")), start(t, options(t, "b"))
			ctxA, cancelA := context.WithCancel(context.Background())
			defer cancelA()
			runA := make(chan error, 1)
			go func() { runA <- a.Run(ctxA, "jobs", log.work("a", stubbornness)) }()
			log.await(t, log.started, "a", 1, 15*time.Second)
			ctxB, cancelB := context.WithCancel(context.Background())
			defer cancelB()
			runB := make(chan error, 1)
			go func() { runB <- b.Run(ctxB, "jobs", log.work("b", 0)) }()
			time.Sleep(200 * time.Millisecond) // b is a standby now

			ended := time.Now()
			tc.end(t, a, cancelA)
			bStarted := log.await(t, log.started, "b", 1, 15*time.Second)
			aReturned := log.await(t, log.returned, "a", 1, time.Second)
			if bStarted.Before(aReturned) {
				t.Fatalf("b's work started %s before a's had returned", aReturned.Sub(bStarted))
			}
			if waited := aReturned.Sub(ended); waited < stubbornness {
				t.Fatalf("a's work returned %s after the end; it ignores cancellation for %s", waited, stubbornness)
			}
			if tc.wantRun != nil {
				select {
				case err := <-runA:
					if !errors.Is(err, tc.wantRun) {
						t.Fatalf("a's Run returned %v; want %v", err, tc.wantRun)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("a's Run did not return")
				}
			}
			cancelB()
			if err := <-runB; !errors.Is(err, context.Canceled) {
				t.Fatalf("b's Run returned %v; want context.Canceled", err)
			}
		})
	}
}

// TestInvoluntaryLossDoesNotWaitForWork destroys the leader's session: its
// work's context is cancelled at once, nothing waits for the work, and the
// candidate leads again only after its work returned.
func TestInvoluntaryLossDoesNotWaitForWork(t *testing.T) {
	log := newWorkLog()
	a, b := start(t, options(t, "a")), start(t, options(t, "b"))
	leads := make(chan *consulelect.Leadership, 10)
	work := log.work("a", stubbornness)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = a.Run(ctx, "jobs", func(ctx context.Context, lead *consulelect.Leadership) error {
			leads <- lead
			return work(ctx, lead)
		})
	}()
	lead := <-leads
	go func() { _ = b.Run(ctx, "jobs", log.work("b", 0)) }()
	time.Sleep(200 * time.Millisecond)

	if err := operatorClient(t).DestroySession(ctx, lead.Session); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lead.Context.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the work's context was not cancelled after the session was destroyed")
	}
	if lost, _ := lead.Lost(); lost.Reason != messages.ReasonSessionInvalidated {
		t.Fatalf("lost with %q; want %q", lost.Reason, messages.ReasonSessionInvalidated)
	}
	bStarted := log.await(t, log.started, "b", 1, 10*time.Second)
	aReturned := log.await(t, log.returned, "a", 1, 10*time.Second)
	if !bStarted.Before(aReturned) {
		t.Fatal("b's work started only after a's returned: the involuntary loss waited for the work")
	}
	// b leads now; make a lead again: its next term starts after its work returned.
	if err := b.Resign("jobs", time.Minute); err != nil {
		t.Fatal(err)
	}
	aAgain := log.await(t, log.started, "a", 2, 15*time.Second)
	if aAgain.Before(aReturned) {
		t.Fatal("a led again before its previous work had returned")
	}
}

// TestRunReturnsWhatWorkReturnsAndReleases: work that returns on its own
// while leading ends the term (the key is released, the standby leads) and
// Run returns its error.
func TestRunReturnsWhatWorkReturnsAndReleases(t *testing.T) {
	log := newWorkLog()
	a, b := start(t, options(t, "a")), start(t, options(t, "b"))
	done := errors.New("the batch is done")
	release := make(chan struct{})
	runA := make(chan error, 1)
	go func() {
		runA <- a.Run(context.Background(), "batch", func(ctx context.Context, lead *consulelect.Leadership) error {
			log.record(log.started, "a")
			<-release
			return done
		})
	}()
	log.await(t, log.started, "a", 1, 15*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = b.Run(ctx, "batch", log.work("b", 0)) }()
	time.Sleep(200 * time.Millisecond)
	close(release)
	select {
	case err := <-runA:
		if !errors.Is(err, done) {
			t.Fatalf("Run returned %v; want the work's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its work did")
	}
	log.await(t, log.started, "b", 1, 10*time.Second)
	if _, leading := a.Leader("batch"); leading {
		t.Fatal("a still leads after its Run returned")
	}
	if err := a.Run(context.Background(), "batch", nil); err == nil {
		t.Fatal("Run with no work function was accepted")
	}
}

// TestProclaimIsSeenByAFollowerWithoutANewTerm: the leader's new metadata
// reaches a follower (and State, also where nobody campaigns) with the same
// fencing token, and the leader's guarded writes still pass.
func TestProclaimIsSeenByAFollowerWithoutANewTerm(t *testing.T) {
	a := start(t, options(t, "a"))
	b := start(t, options(t, "b"))
	observer := start(t, options(t, "observer"))
	events := b.Events()
	defer func() {
		go func() {
			for range events {
			}
		}()
	}() // closed by b's Stop
	if err := a.Campaign("api", map[string]string{"version": "1"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lead, err := a.AwaitLeadership(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Campaign("api", nil); err != nil {
		t.Fatal(err)
	}
	seen := func(version string) messages.LeaderChanged {
		t.Helper()
		for {
			select {
			case evt := <-events:
				if m, ok := evt.(messages.LeaderChanged); ok && m.LeaderID == "a" && m.Metadata["version"] == version {
					return m
				}
			case <-ctx.Done():
				t.Fatalf("b never saw a lead with version %s", version)
			}
		}
	}
	seen("1")
	if err := a.Proclaim("api", map[string]string{"version": "2", "port": "8080"}); err != nil {
		t.Fatal(err)
	}
	changed := seen("2")
	if want := map[string]string{"version": "2", "port": "8080"}; !maps.Equal(changed.Metadata, want) {
		t.Fatalf("b saw metadata %v; want %v", changed.Metadata, want)
	}
	if changed.FencingToken != lead.FencingToken || changed.Session != lead.Session {
		t.Fatalf("b saw token %d session %s; want the same term (%d, %s)", changed.FencingToken, changed.Session, lead.FencingToken, lead.Session)
	}
	if state, err := b.State(ctx, "api"); err != nil || state.Leader.FencingToken != lead.FencingToken || state.Leader.Metadata["version"] != "2" {
		t.Fatalf("b's State shows the leader %+v (%v); want a's term, token %d, with version 2", state.Leader, err, lead.FencingToken)
	}
	for { // and an engine that does not campaign for it
		state, err := observer.State(ctx, "api")
		if err != nil {
			t.Fatalf("an observer's State: %v; want a's term with version 2", err)
		}
		if state.Leader.Metadata["version"] == "2" {
			if state.Leader.FencingToken != lead.FencingToken {
				t.Fatalf("an observer's State shows the leader %+v; want a's term, token %d", state.Leader, lead.FencingToken)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if lead.Context.Err() != nil {
		t.Fatal("proclaiming ended the term")
	}
	if err := a.GuardedPut(ctx, lead, "goapi/proclaim/out", []byte("after proclaim")); err != nil {
		t.Fatalf("a guarded write of the same term after Proclaim: %v", err)
	}
	if err := b.Proclaim("api", map[string]string{"version": "3"}); !errors.Is(err, messages.ErrNotLeader) {
		t.Fatalf("a follower's Proclaim = %v; want ErrNotLeader", err)
	}
	// A new term of the same session: the old term's guarded writes fail.
	if err := a.Resign("api", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := a.GuardedPut(ctx, lead, "goapi/proclaim/out", []byte("stale")); !errors.Is(err, consul.ErrLockLost) {
		t.Fatalf("a guarded write of an ended term = %v; want ErrLockLost", err)
	}
}

func operatorClient(t *testing.T) *consul.Client {
	t.Helper()
	client, err := consul.NewClient(consul.Config{Address: agent.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return client
}
