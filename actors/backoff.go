package actors

import (
	"math/rand/v2"
	"time"
)

// backoff is the one retry schedule of the engine: exponential from base,
// capped at max, with ±20% jitter so that many candidates do not retry in
// step.
type backoff struct {
	base, max time.Duration
	attempt   int
}

func newBackoff(base, max time.Duration) backoff { return backoff{base: base, max: max} }

// next returns the wait before the next try and counts it.
func (b *backoff) next() time.Duration {
	d := b.base << min(b.attempt, 30)
	if d > b.max || d <= 0 {
		d = b.max
	}
	b.attempt++
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)) - d/10
	return d + jitter
}

// failures is how many waits were handed out since the last reset.
func (b *backoff) failures() int { return b.attempt }

func (b *backoff) reset() { b.attempt = 0 }
