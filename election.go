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
// SessionTTL 30s, LockDelay 15s, DrainTimeout 10s.
func DefaultOptions() Options { return actors.DefaultOptions() }

// ErrStopped is returned by calls on an Election that has stopped.
var ErrStopped = errors.New("consul-elect: the election has stopped")

// answerTimeout bounds a question to the engine's actors that does not wait
// for work to drain.
const answerTimeout = 10 * time.Second

// Election is one candidate, for any number of resources, with one Consul
// session. It runs the engine in an actor system of its own; actor users
// spawn actors.NewProps in theirs instead.
type Election struct {
	opts   Options
	system *actor.ActorSystem
	root   *actor.PID
	events *events
	// client talks to Consul for guarded writes (nil with another Backend);
	// closeClient closes it if Start made it.
	client      *consul.Client
	closeClient func()

	mu       sync.Mutex
	leading  map[string]*Leadership
	wake     map[string]chan struct{} // closed when the resource's leadership changes
	running  map[string]bool          // resources a Run is working for
	stopped  chan struct{}
	stopOnce sync.Once
	stopErr  error
}

// Leadership is one term of leadership of a resource.
type Leadership struct {
	Resource     string
	Key          string // the lock key, <KeyPrefix>/<Resource>
	CandidateID  string
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
		client, err := consul.NewClient(opts.ConsulConfig())
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
		opts:        opts,
		client:      client,
		closeClient: closeClient,
		events:      &events{},
		leading:     map[string]*Leadership{},
		wake:        map[string]chan struct{}{},
		running:     map[string]bool{},
		stopped:     make(chan struct{}),
	}
	engineOpts := opts
	engineOpts.Observer = observer{e: e, next: opts.Observer}
	props, err := actors.NewProps(engineOpts)
	if err != nil {
		closeClient()
		return nil, err
	}
	e.system = actor.NewActorSystem(actors.WithZapLogger(opts.Logger))
	shrinkRegistry(e.system)
	e.root, err = e.system.Root.SpawnNamed(props, "consul-elect")
	if err != nil {
		e.system.Shutdown()
		closeClient()
		return nil, err
	}
	return e, nil
}

// observer is how the engine tells the Election of its events, synchronously
// on an actor's goroutine, before anything else hears of them; then the
// user's Observer, if any.
type observer struct {
	e    *Election
	next actors.Observer
}

func (o observer) Event(evt messages.Event) {
	o.e.listen(evt)
	if o.next != nil {
		o.next.Event(evt)
	}
}

func (o observer) Refreshed(sentAt time.Time, took time.Duration, err error) {
	if o.next != nil {
		o.next.Refreshed(sentAt, took, err)
	}
}

func (o observer) ConsulError(op string, err error) {
	if o.next != nil {
		o.next.ConsulError(op, err)
	}
}

// listen only cancels contexts and queues: it runs on an actor's goroutine.
func (e *Election) listen(evt messages.Event) {
	switch m := evt.(type) {
	case messages.LeadershipAcquired:
		ctx, cancel := context.WithCancel(context.Background())
		e.mu.Lock()
		if old := e.leading[m.Resource]; old != nil {
			old.cancel()
		}
		e.leading[m.Resource] = &Leadership{Resource: m.Resource, Key: m.Key, CandidateID: m.CandidateID, Session: m.Session,
			FencingToken: m.FencingToken, Context: ctx, cancel: cancel}
		e.wakeLocked(m.Resource)
		e.mu.Unlock()
	case messages.LeadershipLost:
		e.mu.Lock()
		if l := e.leading[m.Resource]; l != nil && l.FencingToken == m.FencingToken {
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

// Run campaigns for resource (if not already) and calls work each time this
// candidate becomes leader of it, with a context that is cancelled the moment
// the leadership is lost. It is the way to make sure that a standby starts
// only after this leader's work has stopped:
//
//   - A voluntary end (Resign, Stop, ctx done) cancels work's context and
//     releases the key only after work has returned, or after
//     Options.DrainTimeout (then with a warning).
//   - An involuntary loss (session invalidated, renew deadline, key taken,
//     health check critical) cannot wait: work's context is cancelled at
//     once, and lead.Lost() says why and by when work must be gone (StopBy).
//     Once work has returned, the candidate campaigns again and work is
//     called again in the next term.
//   - When work returns on its own while leading, the key is released and
//     Run returns work's error (nil included).
//
// Run returns ctx.Err() when ctx is done (after the drain), and ErrStopped
// after Stop. One Run at a time may work for a resource. A panic in work is
// not recovered.
func (e *Election) Run(ctx context.Context, resource string, work func(ctx context.Context, lead *Leadership) error) error {
	if err := actors.ValidateResource(resource); err != nil {
		return err
	}
	if work == nil {
		return errors.New("consul-elect: Run needs a work function")
	}
	e.mu.Lock()
	if e.running[resource] {
		e.mu.Unlock()
		return fmt.Errorf("consul-elect: a Run is already working for %s", resource)
	}
	e.running[resource] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.running, resource)
		e.mu.Unlock()
	}()

	returned := make(chan error, 1)
	worker := actor.PropsFromProducer(func() actor.Actor { return &runWorker{election: e, work: work, returned: returned} })
	if err := e.send(&messages.Campaign{Resource: resource, Worker: worker}); err != nil {
		return err
	}
	var err error
	select {
	case err = <-returned:
	case <-ctx.Done():
		err = ctx.Err()
	case <-e.stopped:
		return ErrStopped
	}
	if werr := e.withdraw(resource); errors.Is(werr, ErrStopped) {
		return ErrStopped
	} else if werr != nil && err == nil {
		err = werr
	}
	return err
}

// runWorker is Run's work as the resource's worker actor: it calls work when
// the lock actor tells it that this candidate leads, and terminates only once
// work has returned, so that the key is released after it.
type runWorker struct {
	election *Election
	work     func(ctx context.Context, lead *Leadership) error
	returned chan<- error
	cancel   context.CancelFunc
	done     chan struct{}
}

func (w *runWorker) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case messages.LeadershipAcquired:
		lead, ok := w.election.Leader(m.Resource)
		if !ok || lead.FencingToken != m.FencingToken || w.done != nil {
			return // already lost again
		}
		ctx, cancel := context.WithCancel(lead.Context)
		w.cancel, w.done = cancel, make(chan struct{})
		go func() {
			defer close(w.done)
			err := w.work(ctx, lead)
			if lead.Context.Err() == nil { // returned on its own while leading
				select {
				case w.returned <- err:
				default:
				}
			}
		}()
	case *actor.Stopping:
		// The lock actor releases the key once this actor has terminated:
		// waiting here for work is the drain.
		if w.cancel != nil {
			w.cancel()
			<-w.done
		}
	}
}

// Campaign starts campaigning for resource; metadata, when not nil, replaces
// Options.Metadata in the key's value. It returns at once. To run work only
// while leading, use Run.
func (e *Election) Campaign(resource string, metadata map[string]string) error {
	if err := actors.ValidateResource(resource); err != nil {
		return err
	}
	return e.send(&messages.Campaign{Resource: resource, Metadata: metadata})
}

// Resign gives up leadership of resource, if held, and does not campaign
// again for holdOff, so another candidate can take over. It returns once this
// candidate no longer leads (the Leadership's Context is done), so a following
// AwaitLeadership waits for a new term; with Run, the key is released once
// work has returned.
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
	case <-time.After(answerTimeout):
		return fmt.Errorf("consul-elect: resigning %s: the engine did not answer within %s", resource, answerTimeout)
	}
}

// Proclaim has this candidate, as leader of resource, write metadata into
// its key's value without a new term; followers see it in LeaderChanged. It
// returns messages.ErrNotLeader when this candidate does not lead resource.
func (e *Election) Proclaim(resource string, metadata map[string]string) error {
	res, err := e.request(&messages.Proclaim{Resource: resource, Metadata: metadata}, answerTimeout)
	if err != nil {
		return err
	}
	if failed, ok := res.(messages.ElectionError); ok {
		return failed.Err
	}
	return nil
}

// SetHealthy reports this candidate's own health (the application's, unlike
// Options.HealthCheckID's Consul check): while unhealthy it does not
// campaign, and it steps down where it leads (reason unhealthy: the work is
// drained, then the key released). The candidate registry shows it, with
// reason.
func (e *Election) SetHealthy(healthy bool, reason string) error {
	return e.send(&messages.SetHealth{Healthy: healthy, Reason: reason})
}

// Candidates returns the live candidates campaigning for resource, as the
// candidate registry shows them, highest priority first.
func (e *Election) Candidates(ctx context.Context, resource string) ([]messages.Candidate, error) {
	state, err := e.State(ctx, resource)
	return state.Candidates, err
}

// Switchover hands leadership of resource over on purpose: its leader (any
// candidate, this one or another) stops its work, then releases, and to (a
// live, healthy candidate for resource; empty: the healthy one of highest
// priority other than the leader) takes the key while the others stay out.
// It returns once the key is to's (a key handed to its session is its from
// that write; should to lose its session before it starts leading, the key
// moves on as after any lost session), or with an error:
// messages.ErrNoCandidate when to is not a live, healthy candidate,
// messages.ErrNoLeader when nobody leads, and one naming the new leader when
// to did not take the key while the others stayed out (it could not reach
// Consul, say) and another did.
func (e *Election) Switchover(ctx context.Context, resource, to string) error {
	if err := actors.ValidateResource(resource); err != nil {
		return err
	}
	res, err := e.request(&messages.Switchover{Resource: resource, To: to}, answerTimeout)
	if err != nil {
		return err
	}
	if failed, ok := res.(messages.ElectionError); ok {
		return failed.Err
	}
	from := res.(*messages.State).Leader
	for {
		state, err := e.State(ctx, resource)
		if err != nil {
			return fmt.Errorf("consul-elect: switchover of %s: %w", resource, err)
		}
		if leader := state.Leader; leader.Session != "" && leader.FencingToken != from.FencingToken {
			if to == "" || leader.LeaderID == to {
				return nil
			}
			return fmt.Errorf("consul-elect: switchover of %s: %s took over instead of %s", resource, leader.LeaderID, to)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consul-elect: switchover of %s: %w", resource, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// GuardedPut writes key=value in Consul KV only while lead still holds its
// lock (one transaction checking the lock's session and term): a leader that
// lost the lock without knowing it yet gets consul.ErrLockLost instead of a
// stale write.
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

// withdraw is Withdraw, waiting until the key is released (after the drain).
func (e *Election) withdraw(resource string) error {
	_, err := e.request(&messages.Withdraw{Resource: resource}, e.opts.DrainTimeout+answerTimeout)
	return err
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

// request asks the engine and waits for its answer, at most timeout.
func (e *Election) request(msg any, timeout time.Duration) (any, error) {
	select {
	case <-e.stopped:
		return nil, ErrStopped
	default:
	}
	res, err := e.system.Root.RequestFuture(e.root, msg, timeout).Result()
	if err != nil {
		select {
		case <-e.stopped:
			return nil, ErrStopped
		default:
		}
		return nil, fmt.Errorf("consul-elect: the engine did not answer %T within %s: %w", msg, timeout, err)
	}
	return res, nil
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
	if err := ctx.Err(); err != nil {
		return messages.State{}, err
	}
	timeout := answerTimeout
	if deadline, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(deadline), 0) // a future without a timeout waits for ever
	}
	res, err := e.request(&messages.GetState{Resource: resource}, timeout)
	if err != nil {
		return messages.State{}, err
	}
	return *res.(*messages.State), nil
}

// Events returns the engine's events from the first call on: the same values
// the EventStream gets (messages.LeadershipAcquired, LeadershipLost,
// LeaderChanged, ElectionError). None is dropped: they wait in an unbounded
// queue until read, so keep reading. The channel is closed after Stop.
func (e *Election) Events() <-chan messages.Event { return e.events.channel() }

// Stop ends every term (as Resign does: with Run, once work has returned),
// releases the keys so that standbys take over at once, destroys the session
// and stops the engine. It waits until done or ctx ends.
func (e *Election) Stop(ctx context.Context) error {
	e.stopOnce.Do(func() {
		timeout := e.opts.DrainTimeout + answerTimeout
		if deadline, ok := ctx.Deadline(); ok {
			timeout = max(time.Until(deadline), 0)
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
