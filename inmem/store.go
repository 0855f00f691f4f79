package inmem

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/excalibur/consul-elect/consul"
)

// Defaults and Consul's limits, next to the options they fill.
const (
	DefaultNode       = "inmem"
	DefaultDatacenter = "dc1"
	// DefaultMinSessionTTL is Consul's default session_ttl_min.
	DefaultMinSessionTTL = 10 * time.Second
	// DefaultTTLMultiplier is Consul's SessionTTLMultiplier: a session is
	// invalidated twice its TTL after its last renewal.
	DefaultTTLMultiplier = 2.0

	// MaxSessionTTL and MaxLockDelay are Consul's.
	MaxSessionTTL = 24 * time.Hour
	MaxLockDelay  = 60 * time.Second

	// SerfHealth is the check every session is bound to by default.
	SerfHealth = "serfHealth"

	maxValueBytes    = 512 * 1024       // Consul's kv_max_value_size
	maxTxnBytes      = 512 * 1024       // Consul's txn_max_req_len
	defaultQueryWait = 5 * time.Minute  // a blocking query with wait 0
	maxQueryWait     = 10 * time.Minute // Consul's max_query_time
)

// Check statuses.
const (
	StatusPassing  = "passing"
	StatusWarning  = "warning"
	StatusCritical = "critical"
)

// ErrClosed is the error (inside a *consul.Error, like an unreachable
// agent's) of every call on a closed Store.
var ErrClosed = errors.New("inmem: the store is closed")

// Option configures a Store.
type Option func(*config)

type config struct {
	node, datacenter string
	minTTL           time.Duration
	ttlMultiplier    float64
}

// WithNode names the store's node (default DefaultNode).
func WithNode(name string) Option { return func(c *config) { c.node = name } }

// WithDatacenter names the store's datacenter (default DefaultDatacenter).
func WithDatacenter(dc string) Option { return func(c *config) { c.datacenter = dc } }

// WithMinSessionTTL sets the smallest session TTL accepted, like Consul's
// session_ttl_min (default 10s). Tests with short TTLs lower it, as the
// project's dev agent does (1s).
func WithMinSessionTTL(d time.Duration) Option { return func(c *config) { c.minTTL = d } }

// WithTTLMultiplier sets how many TTLs after its last renewal an unrenewed
// session is invalidated (default 2, Consul's). It must be at least 1: Consul
// promises never to expire a session before its TTL.
func WithTTLMultiplier(m float64) Option { return func(c *config) { c.ttlMultiplier = m } }

// Store is an in-memory lock service implementing actors.Backend. It is safe
// for concurrent use. Close it when done: it runs one goroutine (the
// "servers'" timers) until then.
type Store struct {
	cfg config

	mu         sync.Mutex
	index      uint64 // the last write's index, raft-like
	kvIndex    uint64 // the last write to the KV store (sets and deletes)
	checkIndex uint64 // the last write to a check
	kvs        map[string]*consul.Entry
	tombstones map[string]uint64    // deleted key → the delete's index
	lockDelays map[string]time.Time // key → end of its lock-delay
	sessions   map[string]*session
	checks     map[string]*check
	changed    chan struct{} // closed (and replaced) by every write
	frozen     bool
	thawed     chan struct{} // closed while not frozen
	closed     bool
	quit       chan struct{} // closed by Close
	reschedule chan struct{} // tells the timer goroutine deadlines changed
	done       chan struct{} // closed when the timer goroutine has returned
}

type session struct {
	info      consul.SessionInfo
	checks    []string
	expiresAt time.Time // zero: no TTL
}

type check struct {
	consul.Check
	ttl       time.Duration
	expiresAt time.Time // zero: no TTL, or already lapsed
}

// New returns a running Store with one node and its serfHealth check
// passing. It panics on an invalid option, naming it.
func New(opts ...Option) *Store {
	cfg := config{node: DefaultNode, datacenter: DefaultDatacenter, minTTL: DefaultMinSessionTTL, ttlMultiplier: DefaultTTLMultiplier}
	for _, opt := range opts {
		opt(&cfg)
	}
	switch {
	case cfg.node == "":
		panic("inmem: WithNode: the node name is empty")
	case cfg.datacenter == "":
		panic("inmem: WithDatacenter: the datacenter is empty")
	case cfg.minTTL <= 0 || cfg.minTTL > MaxSessionTTL:
		panic(fmt.Sprintf("inmem: WithMinSessionTTL is %s; it must be more than 0s and at most %s", cfg.minTTL, MaxSessionTTL))
	case !(cfg.ttlMultiplier >= 1) || math.IsInf(cfg.ttlMultiplier, 0):
		panic(fmt.Sprintf("inmem: WithTTLMultiplier is %v; it must be at least 1 (Consul never expires a session before its TTL)", cfg.ttlMultiplier))
	}
	thawed := make(chan struct{})
	close(thawed)
	s := &Store{
		cfg:        cfg,
		kvs:        map[string]*consul.Entry{},
		tombstones: map[string]uint64{},
		lockDelays: map[string]time.Time{},
		sessions:   map[string]*session{},
		checks:     map[string]*check{},
		changed:    make(chan struct{}),
		thawed:     thawed,
		quit:       make(chan struct{}),
		reschedule: make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	s.next() // the node's registration
	s.checks[SerfHealth] = &check{Check: consul.Check{ID: SerfHealth, Status: StatusPassing, Output: "Agent alive and reachable"}}
	s.checkIndex = s.next()
	go s.runTimers()
	return s
}

// Close stops the store: calls in progress and later ones fail with
// ErrClosed, and its goroutine has returned when Close does. Closing twice is
// harmless.
func (s *Store) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return
	}
	s.closed = true
	close(s.quit)
	s.mu.Unlock()
	<-s.done
}

// Freeze makes every actors.Backend call block, as if the agent were paused,
// until Unfreeze (or the caller's context ends). Sessions keep expiring.
func (s *Store) Freeze() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.frozen {
		s.frozen = true
		s.thawed = make(chan struct{})
	}
}

// Unfreeze lets frozen calls go on.
func (s *Store) Unfreeze() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen {
		s.frozen = false
		close(s.thawed)
	}
}

// enter waits until the store answers (not frozen) and returns with s.mu
// held, or returns an error (ctx ended, store closed) with s.mu not held.
func (s *Store) enter(ctx context.Context, op string) error {
	s.mu.Lock()
	if err := ctx.Err(); err != nil {
		s.mu.Unlock()
		return &consul.Error{Op: op, Err: err}
	}
	return s.thawedLocked(ctx, op)
}

// thawedLocked, with s.mu held, waits while the store is frozen. It returns
// with s.mu held, or with an error and s.mu not held.
func (s *Store) thawedLocked(ctx context.Context, op string) error {
	for {
		if s.closed {
			s.mu.Unlock()
			return &consul.Error{Op: op, Err: ErrClosed}
		}
		if !s.frozen {
			return nil
		}
		thawed := s.thawed
		s.mu.Unlock()
		select {
		case <-thawed:
		case <-s.quit:
		case <-ctx.Done():
			return &consul.Error{Op: op, Err: ctx.Err()}
		}
		s.mu.Lock()
	}
}

// leave is called, without s.mu, before an answer is returned: a frozen
// agent does not answer either, even for work it has done.
func (s *Store) leave(ctx context.Context, op string) error {
	s.mu.Lock()
	if err := s.thawedLocked(ctx, op); err != nil {
		return err
	}
	s.mu.Unlock()
	return nil
}

// operate is the entry of the operator methods, which are never frozen: it
// returns with s.mu held, or ErrClosed.
func (s *Store) operate(op string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return &consul.Error{Op: op, Err: ErrClosed}
	}
	return nil
}

// block implements a blocking query, with s.mu held: with index > 0 it waits
// until current() moves past index, wait passes or ctx ends. It returns with
// s.mu held, or with an error and s.mu not held.
func (s *Store) block(ctx context.Context, op string, index uint64, wait time.Duration, current func() uint64) error {
	if index == 0 || current() > index {
		return nil
	}
	switch {
	case wait <= 0:
		wait = defaultQueryWait
	case wait > maxQueryWait:
		wait = maxQueryWait
	}
	wait += time.Duration(mrand.Int64N(int64(wait/16) + 1)) // Consul's jitter
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for current() <= index {
		changed := s.changed
		s.mu.Unlock()
		expired := false
		select {
		case <-changed:
		case <-timeout.C:
			expired = true
		case <-s.quit:
		case <-ctx.Done():
			return &consul.Error{Op: op, Err: ctx.Err()}
		}
		s.mu.Lock()
		if err := s.thawedLocked(ctx, op); err != nil {
			return err
		}
		if expired {
			break
		}
	}
	return nil
}

// next takes the index of a new write and wakes blocking queries; with
// s.mu held, they see the whole write once it is released.
func (s *Store) next() uint64 {
	s.index++
	close(s.changed)
	s.changed = make(chan struct{})
	return s.index
}

// wakeTimers tells the timer goroutine that a deadline may be earlier.
func (s *Store) wakeTimers() {
	select {
	case s.reschedule <- struct{}{}:
	default:
	}
}

// runTimers is the servers' clock: it expires sessions and TTL checks.
func (s *Store) runTimers() {
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		next := s.expire(time.Now())
		s.mu.Unlock()
		var fire <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			fire = timer.C
		}
		select {
		case <-s.quit:
			return
		case <-s.reschedule:
		case <-fire:
		}
	}
}

// expire, with s.mu held, invalidates the sessions and lapses the TTL checks
// whose time has come, and returns the next deadline (zero: none).
func (s *Store) expire(now time.Time) time.Time {
	var next time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for id, c := range s.checks {
		if c.expiresAt.IsZero() {
			continue
		}
		if now.Before(c.expiresAt) {
			earliest(c.expiresAt)
			continue
		}
		c.expiresAt = time.Time{}
		s.setCheckStatus(id, StatusCritical, "TTL expired")
	}
	for id, sess := range s.sessions {
		if sess.expiresAt.IsZero() {
			continue
		}
		if now.Before(sess.expiresAt) {
			earliest(sess.expiresAt)
			continue
		}
		s.invalidate(id, s.next())
	}
	for key, until := range s.lockDelays {
		if !now.Before(until) {
			delete(s.lockDelays, key)
		}
	}
	return next
}

// newID returns a random UUID, the form of Consul's session IDs.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
