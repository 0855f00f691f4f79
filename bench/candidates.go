package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/consul/reference"
	"github.com/excalibur/consul-elect/messages"
)

// Bounds on every wait of the harness: nothing it does can hang.
const (
	startTimeout = 10 * time.Second // Start, first leadership
	eventTimeout = 10 * time.Second // one expected event or Lock return
	stopTimeout  = 15 * time.Second // a graceful Stop
)

// stamped is an engine event and when the harness read it from Events.
type stamped struct {
	evt any
	at  time.Time
}

// engineCandidate is one consul-elect Election (its own session, its own
// actor system) with a counted, killable HTTP client.
type engineCandidate struct {
	id     string
	e      *consulelect.Election
	client *consul.Client
	meter  *Meter
	events chan stamped // nil when onEvent is used
	quit   chan struct{}
	done   chan struct{}
	once   sync.Once
}

type engineConfig struct {
	id         string
	prefix     string
	sessionTTL time.Duration
	lockDelay  time.Duration
	resources  []string
	// onEvent, when set, is called with every event instead of queueing it
	// for await (for figures with thousands of events).
	onEvent func(evt any, at time.Time)
	// configure, when set, adjusts the options last.
	configure func(*consulelect.Options)
}

func startEngine(ctx context.Context, env *Env, cfg engineConfig) (*engineCandidate, error) {
	meter := NewMeter()
	client, err := consul.NewClient(consul.Config{Address: env.URL, WrapTransport: meter.Wrap})
	if err != nil {
		return nil, err
	}
	opts := consulelect.DefaultOptions()
	opts.KeyPrefix = cfg.prefix
	opts.SessionTTL = cfg.sessionTTL
	opts.LockDelay = cfg.lockDelay
	opts.CandidateID = cfg.id
	opts.Resources = cfg.resources
	opts.Backend = client
	if cfg.configure != nil {
		cfg.configure(&opts)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	e, err := consulelect.Start(ctx, opts)
	if err != nil {
		client.Close()
		return nil, err
	}
	c := &engineCandidate{id: cfg.id, e: e, client: client, meter: meter, quit: make(chan struct{}), done: make(chan struct{})}
	if cfg.onEvent == nil {
		c.events = make(chan stamped, 1024)
	}
	events := e.Events()
	go func() {
		defer close(c.done)
		for evt := range events {
			at := time.Now()
			if cfg.onEvent != nil {
				cfg.onEvent(evt, at)
				continue
			}
			select {
			case c.events <- stamped{evt, at}:
			case <-c.quit:
				return
			}
		}
	}()
	return c, nil
}

// await reads events until match accepts one, within timeout.
func (c *engineCandidate) await(ctx context.Context, timeout time.Duration, what string, match func(any) bool) (stamped, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		select {
		case s := <-c.events:
			if match(s.evt) {
				return s, nil
			}
		case <-ctx.Done():
			return stamped{}, fmt.Errorf("%s: no %s within %s", c.id, what, timeout)
		}
	}
}

// awaitAcquired waits for this candidate's LeadershipAcquired of resource.
func (c *engineCandidate) awaitAcquired(ctx context.Context, resource string) (messages.LeadershipAcquired, time.Time, error) {
	return c.awaitAcquiredWithin(ctx, resource, eventTimeout)
}

// awaitAcquiredWithin is awaitAcquired with another bound.
func (c *engineCandidate) awaitAcquiredWithin(ctx context.Context, resource string, timeout time.Duration) (messages.LeadershipAcquired, time.Time, error) {
	s, err := c.await(ctx, timeout, "LeadershipAcquired of "+resource, func(evt any) bool {
		a, ok := evt.(messages.LeadershipAcquired)
		return ok && a.Resource == resource
	})
	if err != nil {
		return messages.LeadershipAcquired{}, time.Time{}, err
	}
	return s.evt.(messages.LeadershipAcquired), s.at, nil
}

// awaitLeader waits until this candidate has observed leader leading resource.
func (c *engineCandidate) awaitLeader(ctx context.Context, resource, leader string) error {
	_, err := c.await(ctx, eventTimeout, "LeaderChanged to "+leader, func(evt any) bool {
		l, ok := evt.(messages.LeaderChanged)
		return ok && l.Resource == resource && l.LeaderID == leader
	})
	return err
}

// stop stops the engine (bounded) and closes its client. A killed candidate
// stops fast: every request fails at once.
func (c *engineCandidate) stop() {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		_ = c.e.Stop(ctx)
		close(c.quit)
		select {
		case <-c.done:
		case <-ctx.Done():
		}
		c.client.Close()
	})
}

// lockCandidate is one api.Lock user: its own api.Client (as its own
// process would have), counted and killable.
type lockCandidate struct {
	client *reference.Client
	lock   *reference.Lock
	meter  *Meter
	held   <-chan struct{} // closed when the current holding ends
}

func newLockCandidate(env *Env, key string, ttl, lockDelay time.Duration) (*lockCandidate, error) {
	meter := NewMeter()
	client, err := reference.NewClient(reference.Config{Address: env.URL, WrapTransport: meter.Wrap})
	if err != nil {
		return nil, err
	}
	lock, err := client.NewLock(reference.LockOptions{Key: key, SessionTTL: ttl, LockDelay: lockDelay})
	if err != nil {
		client.Close()
		return nil, err
	}
	return &lockCandidate{client: client, lock: lock, meter: meter}, nil
}

// lockResult is the end of a Lock call and when it returned.
type lockResult struct {
	held <-chan struct{}
	at   time.Time
	err  error
}

// lockAsync calls Lock in a goroutine; the result arrives on the channel.
// Closing the client (close) ends a Lock that is still waiting.
func (c *lockCandidate) lockAsync() <-chan lockResult {
	out := make(chan lockResult, 1)
	go func() {
		held, err := c.lock.Lock(nil)
		at := time.Now()
		if err == nil && held == nil {
			err = errors.New("Lock returned without the lock")
		}
		out <- lockResult{held: held, at: at, err: err}
	}()
	return out
}

// lockNow takes the lock, bounded by timeout.
func (c *lockCandidate) lockNow(timeout time.Duration) error {
	_, err := c.awaitLock(c.lockAsync(), timeout)
	return err
}

// awaitLock waits for a lockAsync result, within timeout, and records the
// holding.
func (c *lockCandidate) awaitLock(results <-chan lockResult, timeout time.Duration) (time.Time, error) {
	select {
	case r := <-results:
		if r.err != nil {
			return time.Time{}, r.err
		}
		c.held = r.held
		return r.at, nil
	case <-time.After(timeout):
		return time.Time{}, fmt.Errorf("api.Lock did not return within %s", timeout)
	}
}

// awaitStandby waits until the candidate's Lock waits in a blocking query:
// it is a standby, ready to take over when the key is released.
func (c *lockCandidate) awaitStandby(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	for c.meter.BlockingInFlight() < 1 {
		select {
		case <-ctx.Done():
			return errors.New("api.Lock standby never reached its blocking query")
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// awaitReleased waits until the last holding's monitor has ended.
func (c *lockCandidate) awaitReleased(timeout time.Duration) error {
	if c.held == nil {
		return nil
	}
	select {
	case <-c.held:
		c.held = nil
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("api.Lock's monitor did not end within %s", timeout)
	}
}

func (c *lockCandidate) close() { c.client.Close() }
