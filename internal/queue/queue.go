// Package queue is the engine's one unbounded queue: producers never block
// and nothing is dropped; a goroutine of the queue's own hands the items, in
// order, to a consumer that may be slow.
package queue

import "sync"

// Queue hands pushed items to deliver, one at a time, in order.
type Queue[T any] struct {
	deliver func(T)

	mu     sync.Mutex
	items  []T
	wake   chan struct{}
	closed bool
	done   chan struct{}
}

// Start starts a queue delivering to deliver on a goroutine of its own.
func Start[T any](deliver func(T)) *Queue[T] {
	q := &Queue[T]{deliver: deliver, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go q.run()
	return q
}

// Push queues item; after Close it is dropped.
func (q *Queue[T]) Push(item T) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.items = append(q.items, item)
	q.signal()
}

func (q *Queue[T]) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *Queue[T]) run() {
	defer close(q.done)
	for {
		<-q.wake
		q.mu.Lock()
		batch, closed := q.items, q.closed
		q.items = nil
		q.mu.Unlock()
		for _, item := range batch {
			q.deliver(item)
		}
		if closed {
			return
		}
	}
}

// Close delivers what is queued, then stops the goroutine, and returns once
// it has.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		q.signal()
	}
	q.mu.Unlock()
	<-q.done
}
