package actors_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/messages"
)

// workerLog records what the workers of a test went through, in order.
type workerLog struct {
	mu     sync.Mutex
	events []workerEvent
	wake   chan struct{}
}

type workerEvent struct {
	worker string // "<candidate>/<resource>"
	what   string // acquired, stopping, stopped
	token  uint64
	at     time.Time
}

func newWorkerLog() *workerLog { return &workerLog{wake: make(chan struct{}, 1000)} }

func (l *workerLog) add(worker, what string, token uint64) {
	l.mu.Lock()
	l.events = append(l.events, workerEvent{worker: worker, what: what, token: token, at: time.Now()})
	l.mu.Unlock()
	l.wake <- struct{}{}
}

// await waits for the n-th event what of worker.
func (l *workerLog) await(t *testing.T, worker, what string, n int, timeout time.Duration) workerEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if e, ok := l.nth(worker, what, n); ok {
			return e
		}
		select {
		case <-l.wake:
		case <-deadline:
			t.Fatalf("%s: no %s #%d within %s", worker, what, n, timeout)
		}
	}
}

func (l *workerLog) nth(worker, what string, n int) (workerEvent, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.worker == worker && e.what == what {
			if n--; n == 0 {
				return e, true
			}
		}
	}
	return workerEvent{}, false
}

func (l *workerLog) count(worker, what string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.worker == worker && e.what == what {
			n++
		}
	}
	return n
}

// probeWorker is a user's worker: it records its life, takes stopFor to
// stop, and panics on its first LeadershipAcquired if failures says so.
type probeWorker struct {
	name     string
	log      *workerLog
	stopFor  time.Duration
	failures *atomic.Int32
}

func (w *probeWorker) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case messages.LeadershipAcquired:
		if w.failures != nil && w.failures.Add(-1) >= 0 {
			panic("the worker fails")
		}
		w.log.add(w.name, "acquired", m.FencingToken)
	case *actor.Stopping:
		w.log.add(w.name, "stopping", 0)
		time.Sleep(w.stopFor) // a worker finishing what it was doing
		w.log.add(w.name, "stopped", 0)
	}
}

func (c *candidate) campaignWith(resource string, w *probeWorker) {
	c.system.Root.Send(c.root, &messages.Campaign{Resource: resource,
		Worker: actor.PropsFromProducer(func() actor.Actor { copy := *w; return &copy })})
}

// TestStandbyWorkerStartsOnlyAfterTheLeadersWorkerStopped ends a term
// voluntarily while the leader's worker takes two seconds to stop: the key
// is released only once it has terminated.
func TestStandbyWorkerStartsOnlyAfterTheLeadersWorkerStopped(t *testing.T) {
	stopped := make(chan struct{})
	ends := map[string]func(c *candidate) (wait func()){
		"Resign": func(c *candidate) func() {
			c.system.Root.Send(c.root, &messages.Resign{Resource: "jobs", HoldOff: time.Minute})
			return func() {}
		},
		"Withdraw": func(c *candidate) func() {
			c.system.Root.Send(c.root, &messages.Withdraw{Resource: "jobs"})
			return func() {}
		},
		"Stop": func(c *candidate) func() {
			go func() { c.stop(); stopped <- struct{}{} }()
			return func() { <-stopped }
		},
	}
	for name, end := range ends {
		t.Run(name, func(t *testing.T) {
			log := newWorkerLog()
			prefix := testPrefix(t)
			a := startCandidate(t, withPrefix(fastOptions(t, shared, "a"), prefix))
			a.campaignWith("jobs", &probeWorker{name: "a", log: log, stopFor: 2 * time.Second})
			log.await(t, "a", "acquired", 1, 15*time.Second)
			b := startCandidate(t, withPrefix(fastOptions(t, shared, "b"), prefix))
			b.campaignWith("jobs", &probeWorker{name: "b", log: log})
			await(b, 10*time.Second, func(m messages.LeaderChanged) bool { return m.LeaderID == "a" })

			wait := end(a)
			defer wait()
			lost := await(a, 5*time.Second, func(m messages.LeadershipLost) bool { return true })
			aStopped := log.await(t, "a", "stopped", 1, 10*time.Second)
			started := log.await(t, "b", "acquired", 1, 15*time.Second)
			if started.at.Before(aStopped.at) {
				t.Fatalf("b's worker started %s before a's had stopped", aStopped.at.Sub(started.at))
			}
			if stopping, _ := log.nth("a", "stopping", 1); stopping.at.Before(lost.At) {
				t.Fatal("a's worker was told to stop before LeadershipLost was published")
			}
		})
	}
}

// TestInvoluntaryLossStopsTheWorkerAtOnce destroys the leader's session: its
// worker is stopped at once, nothing waits for it, and the candidate leads
// again only after it has terminated.
func TestInvoluntaryLossStopsTheWorkerAtOnce(t *testing.T) {
	log := newWorkerLog()
	prefix := testPrefix(t)
	a := startCandidate(t, withPrefix(fastOptions(t, shared, "a"), prefix))
	a.campaignWith("jobs", &probeWorker{name: "a", log: log, stopFor: 2 * time.Second})
	acquired := await(a, 15*time.Second, func(m messages.LeadershipAcquired) bool { return true })
	b := startCandidate(t, withPrefix(fastOptions(t, shared, "b"), prefix))
	b.campaignWith("jobs", &probeWorker{name: "b", log: log})
	await(b, 10*time.Second, func(m messages.LeaderChanged) bool { return m.LeaderID == "a" })

	if err := operator(t, shared).DestroySession(ctxFor(t), acquired.Session); err != nil {
		t.Fatal(err)
	}
	await(a, 5*time.Second, func(m messages.LeadershipLost) bool { return m.Reason == messages.ReasonSessionInvalidated })
	log.await(t, "a", "stopping", 1, time.Second)
	started := log.await(t, "b", "acquired", 1, 10*time.Second)
	stopped := log.await(t, "a", "stopped", 1, 10*time.Second)
	if !started.at.Before(stopped.at) {
		t.Fatal("b's worker started only after a's had stopped: the involuntary loss waited for the worker")
	}
	b.system.Root.Send(b.root, &messages.Resign{Resource: "jobs", HoldOff: time.Minute})
	again := log.await(t, "a", "acquired", 2, 15*time.Second)
	if again.at.Before(stopped.at) {
		t.Fatal("a led again before its previous worker had stopped")
	}
}

// TestPanickingWorkerIsRestartedWhileLeading: a worker that fails is
// restarted (and told of the term again) while the leadership lasts; the
// leadership and the other resources are unaffected.
func TestPanickingWorkerIsRestartedWhileLeading(t *testing.T) {
	log := newWorkerLog()
	opts := fastOptions(t, shared, "a")
	opts.Logger = quietLogger() // the panics are logged
	a := startCandidate(t, opts)
	failures := &atomic.Int32{}
	failures.Store(3)
	a.campaignWith("flaky", &probeWorker{name: "a/flaky", log: log, failures: failures})
	a.campaignWith("steady", &probeWorker{name: "a/steady", log: log})
	first := await(a, 15*time.Second, func(m messages.LeadershipAcquired) bool { return m.Resource == "flaky" })
	got := log.await(t, "a/flaky", "acquired", 1, 15*time.Second)
	if got.token != first.FencingToken {
		t.Fatalf("the restarted worker was told of token %d; the term's is %d", got.token, first.FencingToken)
	}
	if n := failures.Load(); n >= 0 {
		t.Fatalf("the worker failed %d times; want 3", 3-n)
	}
	none(a, time.Second, func(m messages.LeadershipLost) bool { return true })
	if n := log.count("a/steady", "acquired"); n != 1 {
		t.Fatalf("the other resource's worker started %d times; want once", n)
	}
	if n := log.count("a/flaky", "acquired"); n != 1 {
		t.Fatalf("the flaky worker reached its work %d times; want once, after its restarts", n)
	}
}

func withPrefix(o actors.Options, prefix string) actors.Options { o.KeyPrefix = prefix; return o }
