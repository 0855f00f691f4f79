package main

import (
	"context"
	"sync"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
)

// renewalClock is the engine's Consul backend, noting for each session when
// the last create or renew request that succeeded was sent. Consul restarted
// the session's TTL no earlier than that, so it cannot expire the session
// before sent + TTL: that is the moment the command must be gone by, less
// the engine's default margin of TTL/10 for clock drift.
//
// The engine keeps the same time for its own self-fence deadline; the Go API
// does not expose it, so we watch the calls the engine makes.
type renewalClock struct {
	actors.Backend
	ttl  time.Duration
	mu   sync.Mutex
	sent map[string]time.Time // session → last successful create/renew sent
}

func newRenewalClock(backend actors.Backend, ttl time.Duration) *renewalClock {
	return &renewalClock{Backend: backend, ttl: ttl, sent: map[string]time.Time{}}
}

func (c *renewalClock) CreateSession(ctx context.Context, spec consul.SessionSpec) (string, error) {
	sentAt := time.Now()
	id, err := c.Backend.CreateSession(ctx, spec)
	if err == nil {
		c.note(id, sentAt)
	}
	return id, err
}

func (c *renewalClock) RenewSession(ctx context.Context, id string) error {
	sentAt := time.Now()
	err := c.Backend.RenewSession(ctx, id)
	if err == nil {
		c.note(id, sentAt)
	}
	return err
}

// note records a successful create or renew. Sessions are kept after they
// are destroyed, since a leadership lost with its session is stopped after
// the engine destroyed it; those renewed more than forgetAfter TTLs before
// the latest one are dropped.
func (c *renewalClock) note(id string, sentAt time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sentAt.After(c.sent[id]) {
		c.sent[id] = sentAt
	}
	for other, at := range c.sent {
		if sentAt.Sub(at) > forgetAfter*c.ttl {
			delete(c.sent, other)
		}
	}
}

const forgetAfter = 10

// killBy is when a leader holding session must have stopped its command:
// TTL − TTL/10 after the last renewal that succeeded. Zero when unknown.
func (c *renewalClock) killBy(session string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	sent, ok := c.sent[session]
	if !ok {
		return time.Time{}
	}
	return sent.Add(c.ttl - c.ttl/10)
}
