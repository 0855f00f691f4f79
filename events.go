package consulelect

import (
	"sync"
	"time"

	"github.com/excalibur/consul-elect/internal/queue"
	"github.com/excalibur/consul-elect/messages"
)

// drainGrace is how long, after Stop, the events channel waits for a reader
// to take what is still queued before closing anyway.
const drainGrace = 2 * time.Second

// events hands the engine's events to Events' channel without ever blocking
// the engine and without dropping any. It queues nothing until the channel
// is first asked for.
type events struct {
	mu      sync.Mutex
	out     chan messages.Event
	queue   *queue.Queue[messages.Event]
	stopped bool
	abandon chan struct{} // closed drainGrace after Stop: a reader that left cannot keep us
}

func (e *events) push(evt messages.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.queue != nil {
		e.queue.Push(evt)
	}
}

// channel starts the queue on first use and returns its channel.
func (e *events) channel() <-chan messages.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.out == nil {
		e.out, e.abandon = make(chan messages.Event), make(chan struct{})
		if e.stopped {
			close(e.out)
			return e.out
		}
		out, abandon := e.out, e.abandon
		e.queue = queue.Start(func(evt messages.Event) {
			select {
			case out <- evt:
			case <-abandon:
			}
		})
	}
	return e.out
}

// close ends the channel once every queued event has been read, or after
// drainGrace.
func (e *events) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = true
	if e.queue == nil {
		return
	}
	q, out, abandon := e.queue, e.out, e.abandon
	e.queue = nil
	timer := time.AfterFunc(drainGrace, func() { close(abandon) })
	go func() {
		q.Close()
		timer.Stop()
		close(out)
	}()
}
