package actors

import (
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/messages"
	"go.uber.org/zap"
)

// eventBus publishes the engine's events without ever blocking the actor that
// publishes them. The Observer, if any, is called synchronously and must not
// block; the actor system's EventStream, which is synchronous and runs every
// subscriber on the publisher's goroutine, is fed from a queue by a goroutine
// of its own, so a slow or panicking subscriber cannot delay a step-down.
type eventBus struct {
	system   *actor.ActorSystem
	observer Observer // may be nil
	logger   *zap.Logger

	mu     sync.Mutex
	queue  []messages.Event
	wake   chan struct{}
	closed bool
	done   chan struct{}
}

func newEventBus(system *actor.ActorSystem, observer Observer, logger *zap.Logger) *eventBus {
	b := &eventBus{system: system, observer: observer, logger: logger, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go b.run()
	return b
}

// publish hands evt to the observer and queues it for the EventStream.
func (b *eventBus) publish(evt messages.Event) {
	if b.observer != nil {
		b.observer.Event(evt)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.queue = append(b.queue, evt)
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *eventBus) run() {
	defer close(b.done)
	for {
		<-b.wake
		b.mu.Lock()
		batch, closed := b.queue, b.closed
		b.queue = nil
		b.mu.Unlock()
		for _, evt := range batch {
			b.deliver(evt)
		}
		if closed {
			return
		}
	}
}

func (b *eventBus) deliver(evt messages.Event) {
	defer func() {
		if r := recover(); r != nil {
			b.logger.Error("an EventStream subscriber panicked", zap.Any("panic", r))
		}
	}()
	b.system.EventStream.Publish(evt)
}

// close delivers what is queued and stops the goroutine.
func (b *eventBus) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	<-b.done
}
