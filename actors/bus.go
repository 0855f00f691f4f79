package actors

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/internal/queue"
	"github.com/excalibur/consul-elect/messages"
	"go.uber.org/zap"
)

// eventBus publishes the engine's events without ever blocking the actor that
// publishes them. The Observer, if any, is called synchronously and must not
// block; the actor system's EventStream, which is synchronous and runs every
// subscriber on the publisher's goroutine, is fed from a queue by a goroutine
// of its own, so a slow or panicking subscriber cannot delay a step-down.
type eventBus struct {
	observer Observer // may be nil
	stream   *queue.Queue[messages.Event]
}

func newEventBus(system *actor.ActorSystem, observer Observer, logger *zap.Logger) *eventBus {
	return &eventBus{observer: observer, stream: queue.Start(func(evt messages.Event) {
		defer func() {
			if r := recover(); r != nil {
				logger.Error("an EventStream subscriber panicked", zap.Any("panic", r))
			}
		}()
		system.EventStream.Publish(evt)
	})}
}

// publish hands evt to the observer and queues it for the EventStream.
func (b *eventBus) publish(evt messages.Event) {
	if b.observer != nil {
		b.observer.Event(evt)
	}
	b.stream.Push(evt)
}

// close delivers what is queued and stops the goroutine.
func (b *eventBus) close() { b.stream.Close() }
