package consulelect

import (
	"sync"
	"time"

	"github.com/excalibur/consul-elect/messages"
)

// drainGrace is how long, after Stop, the events channel waits for a reader
// to take what is still queued before closing anyway.
const drainGrace = 2 * time.Second

// eventQueue hands events to a channel without ever blocking the engine and
// without dropping any: events wait in a slice until the reader takes them.
// It queues nothing until channel is first called.
type eventQueue struct {
	mu      sync.Mutex
	queue   []messages.Event
	out     chan messages.Event
	wake    chan struct{}
	started bool
	closed  bool
}

func newEventQueue() *eventQueue {
	return &eventQueue{wake: make(chan struct{}, 1)}
}

func (q *eventQueue) push(evt messages.Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.started || q.closed {
		return
	}
	q.queue = append(q.queue, evt)
	q.signal()
}

func (q *eventQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// channel starts the queue on first use and returns its channel.
func (q *eventQueue) channel() <-chan messages.Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.started {
		q.started = true
		q.out = make(chan messages.Event)
		if q.closed {
			close(q.out)
		} else {
			go q.run()
		}
	}
	return q.out
}

func (q *eventQueue) run() {
	defer close(q.out)
	var grace <-chan time.Time // set once closed: a reader that left cannot keep us
	for {
		q.mu.Lock()
		closed, empty := q.closed, len(q.queue) == 0
		var next messages.Event
		if !empty {
			next = q.queue[0]
		}
		q.mu.Unlock()
		switch {
		case closed && empty:
			return
		case closed && grace == nil:
			grace = time.After(drainGrace)
		}
		if empty {
			<-q.wake
			continue
		}
		select {
		case q.out <- next:
			q.mu.Lock()
			q.queue[0] = nil
			q.queue = q.queue[1:]
			q.mu.Unlock()
		case <-q.wake:
		case <-grace:
			return
		}
	}
}

// close ends the channel once every queued event has been read (or after
// drainGrace).
func (q *eventQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.signal()
}
