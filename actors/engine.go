package actors

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/excalibur/consul-elect/internal/protocol"
	"github.com/excalibur/consul-elect/messages"
	"go.uber.org/zap"
)

// engine is what every actor of one election shares; it is immutable once
// the root has started.
type engine struct {
	opts    Options
	backend Backend
	prefix  string
	logger  *zap.Logger
	bus     *eventBus
	// failover is the backend's check registration, with FastFailover.
	failover FailoverBackend
	// closeBackend, when set, closes the client NewProps made.
	closeBackend func()
	timing       Timing
	// requests bounds the locks' asynchronous acquires and releases: it ends
	// when the election stops. A lock's own stop leaves them to finish, and
	// drops their answers; a context of each lock's own would cost it a few
	// hundred bytes for as long as it lives.
	requests context.Context
	// refreshes is when the session was last refreshed, written by renewal
	// and read by the locks when they step down (for LeadershipLost.StopBy).
	refreshes *refreshes
	// share is this candidate's fair share with Options.Balance, as the root
	// last worked it out (a Share is never changed once published). The
	// locks read it when a key is free and when they hand one over.
	share *atomic.Pointer[protocol.Share]
}

// refreshes records the last successful refreshes of the current session.
type refreshes struct {
	mu        sync.Mutex
	session   string
	renewedAt time.Time
	fedAt     time.Time
}

func (c *refreshes) set(session string, renewedAt, fedAt time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if session != c.session {
		c.session, c.renewedAt, c.fedAt = session, time.Time{}, time.Time{}
	}
	if renewedAt.After(c.renewedAt) {
		c.renewedAt = renewedAt
	}
	if fedAt.After(c.fedAt) {
		c.fedAt = fedAt
	}
}

// stopBy is when the work of a leader of session must be gone (see
// LeadershipLost.StopBy); zero when unknown.
func (c *refreshes) stopBy(session string, t Timing) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if session != c.session {
		return time.Time{}
	}
	return t.stopBy(c.renewedAt, c.fedAt)
}

// publish hands evt to the bus, naming this candidate in an error.
func (e *engine) publish(evt messages.Event) {
	if failure, ok := evt.(messages.ElectionError); ok && failure.CandidateID == "" {
		failure.CandidateID = e.opts.CandidateID
		evt = failure
	}
	e.bus.publish(evt)
}

// consulError tells the observer, if any, of a failed Consul request.
func (e *engine) consulError(op string, err error) {
	if e.opts.Observer != nil {
		e.opts.Observer.ConsulError(op, err)
	}
}

// refreshed tells the observer, if any, of a session renewal or creation.
func (e *engine) refreshed(sentAt time.Time, took time.Duration, err error) {
	if e.opts.Observer != nil {
		e.opts.Observer.Refreshed(sentAt, took, err)
	}
}

const (
	// stopTimeout bounds a graceful stop when Consul does not answer.
	stopTimeout = 5 * time.Second
	// requestTimeout bounds a request that does not block by design (create
	// a session, acquire), so that a frozen agent shows as an error.
	requestTimeout = 10 * time.Second
)

// blockingTimeout bounds a blocking query that waits up to wait: Consul adds
// up to wait/16 of jitter; past that the connection is presumed dead.
func blockingTimeout(wait time.Duration) time.Duration { return wait + wait/16 + requestTimeout }
