package consulelect

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
)

// Options configure an Election; see actors.Options for every field.
type Options = actors.Options

// DefaultOptions returns the defaults: KeyPrefix excalibur/leader-election,
// SessionTTL 30s, LockDelay 15s.
func DefaultOptions() Options { return actors.DefaultOptions() }

// ErrStopped is returned by calls on an Election that has stopped.
var ErrStopped = errors.New("consul-elect: the election has stopped")

// requestTimeout bounds a question to the engine's actors.
const requestTimeout = 5 * time.Second

// Election is one candidate, for any number of resources, with one Consul
// session. It runs the engine in an actor system of its own; actor users
// spawn actors.NewProps in theirs instead.
type Election struct {
	system *actor.ActorSystem
	root   *actor.PID
	events *eventQueue
	// client talks to Consul for guarded writes (nil with another Backend);
	// closeClient closes it if Start made it.
	client      *consul.Client
	closeClient func()

	mu       sync.Mutex
	leading  map[string]*Leadership
	wake     map[string]chan struct{} // closed when the resource's leadership changes
	stopped  chan struct{}
	stopOnce sync.Once
	stopErr  error
}

// Leadership is one term of leadership of a resource.
type Leadership struct {
	Resource     string
	Key          string // the lock key, <KeyPrefix>/<Resource>
	Session      string
	FencingToken uint64
	// Context is cancelled the moment the leadership is lost, before the
	// engine talks to Consul about it. Stop the leader's work when it is done.
	Context context.Context
	cancel  context.CancelFunc
	lost    atomic.Pointer[messages.LeadershipLost]
}

// Lost returns how the leadership ended, once Context is done: the reason,
// and StopBy, by when work started as leader must have stopped.
func (l *Leadership) Lost() (messages.LeadershipLost, bool) {
	if lost := l.lost.Load(); lost != nil {
		return *lost, true
	}
	return messages.LeadershipLost{}, false
}

// Start checks opts, reaches Consul once (an unreachable agent or a rejected
// token is an error here, not a silent retry), and starts the engine. Events
// from then on are published to Events; leaders are readable at any time.
func Start(ctx context.Context, opts Options) (*Election, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	closeClient := func() {}
	if opts.Backend == nil {
		client, err := consul.NewClient(consul.Config{Address: opts.ConsulAddress, Datacenter: opts.Datacenter,
			Token: opts.Token, TokenFile: opts.TokenFile, TLS: opts.TLS})
		if err != nil {
			return nil, err
		}
		opts.Backend, closeClient = client, client.Close
	}
	client, _ := opts.Backend.(*consul.Client)
	if _, err := opts.Backend.Agent(ctx); err != nil {
		closeClient()
		return nil, fmt.Errorf("consul-elect: cannot reach Consul: %w", err)
	}
	e := &Election{
		client:      client,
		closeClient: closeClient,
		events:      newEventQueue(),
		leading:     map[string]*Leadership{},
		wake:        map[string]chan struct{}{},
		stopped:     make(chan struct{}),
	}
	props, err := actors.NewProps(opts, e.listen)
	if err != nil {
		closeClient()
		return nil, err
	}
	e.system = actor.NewActorSystem(actors.WithZapLogger(opts.Logger))
	e.root, err = e.system.Root.SpawnNamed(props, "consul-elect")
	if err != nil {
		e.system.Shutdown()
		closeClient()
		return nil, err
	}
	return e, nil
}

// listen is called by the engine with every event, on an actor's goroutine:
// it only cancels contexts and queues.
func (e *Election) listen(evt any) {
	switch m := evt.(type) {
	case messages.LeadershipAcquired:
		ctx, cancel := context.WithCancel(context.Background())
		e.mu.Lock()
		if old := e.leading[m.Resource]; old != nil {
			old.cancel()
		}
		e.leading[m.Resource] = &Leadership{Resource: m.Resource, Key: m.Key, Session: m.Session, FencingToken: m.FencingToken,
			Context: ctx, cancel: cancel}
		e.wakeLocked(m.Resource)
		e.mu.Unlock()
	case messages.LeadershipLost:
		e.mu.Lock()
		if l := e.leading[m.Resource]; l != nil {
			l.lost.Store(&m)
			l.cancel()
			delete(e.leading, m.Resource)
		}
		e.wakeLocked(m.Resource)
		e.mu.Unlock()
	}
	e.events.push(evt)
}

func (e *Election) wakeLocked(resource string) {
	if ch, ok := e.wake[resource]; ok {
		close(ch)
		delete(e.wake, resource)
	}
}

// Campaign starts campaigning for resource; metadata, when not nil, replaces
// Options.Metadata in the key's value. It returns at once.
func (e *Election) Campaign(resource string, metadata map[string]string) error {
	if err := actors.ValidateResource(resource); err != nil {
		return err
	}
	return e.send(&messages.Campaign{Resource: resource, Metadata: metadata})
}

// Resign gives up leadership of resource, if held, and does not campaign
// again for holdOff, so another candidate can take over. It returns once this
// candidate no longer leads (the Leadership's Context is done), so a following
// AwaitLeadership waits for a new term.
func (e *Election) Resign(resource string, holdOff time.Duration) error {
	if holdOff < 0 {
		return fmt.Errorf("holdOff is %s; it must not be negative", holdOff)
	}
	lead, leading := e.Leader(resource)
	if err := e.send(&messages.Resign{Resource: resource, HoldOff: holdOff}); err != nil || !leading {
		return err
	}
	select {
	case <-lead.Context.Done():
		return nil
	case <-e.stopped:
		return nil
	case <-time.After(requestTimeout):
		return fmt.Errorf("consul-elect: resigning %s: the engine did not answer within %s", resource, requestTimeout)
	}
}

// GuardedPut writes key=value in Consul KV only while lead still holds its
// lock (one transaction checking the lock's session and fencing token): a
// leader that lost the lock without knowing it yet gets consul.ErrLockLost
// instead of a stale write.
func (e *Election) GuardedPut(ctx context.Context, lead *Leadership, key string, value []byte) error {
	if e.client == nil {
		return errors.New("consul-elect: GuardedPut needs the Consul backend (Options.Backend is another one)")
	}
	return e.client.GuardedPut(ctx, consul.Fence{Key: lead.Key, Session: lead.Session, Token: lead.FencingToken}, key, value)
}

// Withdraw stops campaigning for resource, releasing it if held.
func (e *Election) Withdraw(resource string) error {
	return e.send(&messages.Withdraw{Resource: resource})
}

func (e *Election) send(msg any) error {
	select {
	case <-e.stopped:
		return ErrStopped
	default:
	}
	e.system.Root.Send(e.root, msg)
	return nil
}

// Leader returns the current leadership of resource, if this candidate leads.
func (e *Election) Leader(resource string) (*Leadership, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	l, ok := e.leading[resource]
	return l, ok
}

// AwaitLeadership waits until this candidate leads resource (campaign first)
// and returns the leadership, whose Context ends with it.
func (e *Election) AwaitLeadership(ctx context.Context, resource string) (*Leadership, error) {
	for {
		e.mu.Lock()
		if l, ok := e.leading[resource]; ok {
			e.mu.Unlock()
			return l, nil
		}
		ch, ok := e.wake[resource]
		if !ok {
			ch = make(chan struct{})
			e.wake[resource] = ch
		}
		e.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-e.stopped:
			return nil, ErrStopped
		}
	}
}

// State asks the engine for the state of resource: whether this candidate
// campaigns and leads, and who leads as observed.
func (e *Election) State(ctx context.Context, resource string) (messages.State, error) {
	select {
	case <-e.stopped:
		return messages.State{}, ErrStopped
	default:
	}
	timeout := requestTimeout
	if deadline, ok := ctx.Deadline(); ok {
		timeout = time.Until(deadline)
	}
	res, err := e.system.Root.RequestFuture(e.root, &messages.GetState{Resource: resource}, timeout).Result()
	if err != nil {
		return messages.State{}, fmt.Errorf("consul-elect: reading the state of %s: %w", resource, err)
	}
	return *res.(*messages.State), nil
}

// Events returns the engine's events (messages.LeadershipAcquired,
// LeadershipLost, LeaderChanged, ElectionError) from the first call on. None
// is dropped: they wait in an unbounded queue until read, so keep reading.
// The channel is closed after Stop.
func (e *Election) Events() <-chan any { return e.events.channel() }

// Stop resigns every leadership (releasing the keys, so standbys take over
// at once), destroys the session and stops the engine. It waits until done or
// ctx ends.
func (e *Election) Stop(ctx context.Context) error {
	e.stopOnce.Do(func() {
		timeout := requestTimeout + 2*time.Second
		if deadline, ok := ctx.Deadline(); ok {
			timeout = time.Until(deadline)
		}
		_, err := e.system.Root.RequestFuture(e.root, &messages.Stop{}, timeout).Result()
		if err != nil {
			e.stopErr = fmt.Errorf("consul-elect: stopping: %w", err)
		}
		// Wait for the root and its children to be gone, then shut down.
		_ = e.system.Root.PoisonFuture(e.root).Wait()
		e.system.Shutdown()
		e.closeClient()
		close(e.stopped)
		e.events.close()
		e.mu.Lock()
		for resource, l := range e.leading {
			l.cancel()
			delete(e.leading, resource)
		}
		e.mu.Unlock()
	})
	return e.stopErr
}
