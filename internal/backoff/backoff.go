// Package backoff is consul-elect's one retry schedule: exponential from a
// base, capped, with ±10% jitter so that many candidates do not retry in
// step.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff hands out the waits between retries.
type Backoff struct {
	base, max time.Duration
	attempt   int
}

// New returns a schedule that waits base, 2·base, 4·base … at most max.
func New(base, max time.Duration) Backoff { return Backoff{base: base, max: max} }

// Next returns the wait before the next try and counts it.
func (b *Backoff) Next() time.Duration {
	d := Delay(b.base, b.max, b.attempt)
	b.attempt++
	return d + time.Duration(rand.Int64N(int64(d)/5+1)) - d/10
}

// Failures is how many waits were handed out since the last Reset.
func (b *Backoff) Failures() int { return b.attempt }

// Reset starts again from base.
func (b *Backoff) Reset() { b.attempt = 0 }

// Delay is the wait before retry number attempt (0 first), without jitter:
// base·2^attempt, at most max.
func Delay(base, max time.Duration, attempt int) time.Duration {
	d := base << min(attempt, 30)
	if d > max || d <= 0 {
		return max
	}
	return d
}
