// Package leakcheck holds the goleak options shared by the tests of packages
// that start actors.
package leakcheck

import "go.uber.org/goleak"

// Options ignore protoactor-go's dead-letter throttle: a goroutine it starts
// when a message reaches a stopped actor, which ends by itself after the
// throttle period (one second). Everything else must be gone.
func Options() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	}
}
