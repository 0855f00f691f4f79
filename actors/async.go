package actors

import (
	"context"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// calls runs an actor's blocking calls off its mailbox. Each call runs in a
// goroutine with a context that Stop cancels; its result comes back to the
// actor as a message. Stop waits for every goroutine, so nothing outlives the
// actor. Timers likewise send a message to the actor when they fire.
type calls struct {
	system *actor.ActorSystem
	self   *actor.PID
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	timers map[*time.Timer]struct{} // made by the first timer: most actors have none
	mu     sync.Mutex
}

func newCalls(c actor.Context) *calls {
	ctx, cancel := context.WithCancel(context.Background())
	return &calls{system: c.ActorSystem(), self: c.Self(), ctx: ctx, cancel: cancel}
}

// run calls fn in a goroutine and sends its result to the actor.
func (w *calls) run(fn func(ctx context.Context) any) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		msg := fn(w.ctx)
		if w.ctx.Err() == nil && msg != nil {
			w.system.Root.Send(w.self, msg)
		}
	}()
}

// deliver sends msg to the actor unless it has stopped. Callbacks of
// asynchronous calls use it.
func (w *calls) deliver(msg any) {
	if w.ctx.Err() == nil {
		w.system.Root.Send(w.self, msg)
	}
}

// after sends msg to the actor after d. The timer is stopped by Stop.
func (w *calls) after(d time.Duration, msg any) *time.Timer {
	w.mu.Lock()
	defer w.mu.Unlock()
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		w.mu.Lock()
		_, live := w.timers[t]
		delete(w.timers, t)
		w.mu.Unlock()
		if live && w.ctx.Err() == nil {
			w.system.Root.Send(w.self, msg)
		}
	})
	if w.timers == nil {
		w.timers = map[*time.Timer]struct{}{}
	}
	w.timers[t] = struct{}{}
	return t
}

// cancelTimer stops t if it has not fired.
func (w *calls) cancelTimer(t *time.Timer) {
	if t == nil {
		return
	}
	w.mu.Lock()
	delete(w.timers, t)
	w.mu.Unlock()
	t.Stop()
}

// stop cancels every call and timer and waits for the calls to return.
func (w *calls) stop() {
	w.cancel()
	w.mu.Lock()
	for t := range w.timers {
		t.Stop()
	}
	clear(w.timers)
	w.mu.Unlock()
	w.wg.Wait()
}

// query is the one blocking query an actor keeps in flight, which it can
// replace: one sent while the agent did not answer may hang until its
// timeout, long after the agent answers again.
type query struct {
	n    uint64 // the query in flight, counted
	stop context.CancelFunc
}

// start begins the next query, under calls' context and for at most
// timeout, and ends the one in flight; the answer must carry n, for
// answered.
func (q *query) start(calls *calls, timeout time.Duration) (ctx context.Context, n uint64) {
	if q.stop != nil {
		q.stop()
	}
	q.n++
	ctx, q.stop = context.WithTimeout(calls.ctx, timeout)
	return ctx, q.n
}

// answered reports whether n is the query in flight, which is then over;
// the answer to one that was replaced is to be dropped.
func (q *query) answered(n uint64) bool {
	if n != q.n {
		return false
	}
	q.stop()
	q.stop = nil
	return true
}

// inFlight reports whether a query is out.
func (q *query) inFlight() bool { return q.stop != nil }
