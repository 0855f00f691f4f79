package actors

import (
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/consul"
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
	// clock is when the session was last refreshed, written by renewal and
	// read by the locks when they step down (for LeadershipLost.StopBy).
	clock *sessionClock
}

// sessionClock records the last successful refreshes of the current session.
type sessionClock struct {
	mu        sync.Mutex
	session   string
	renewedAt time.Time
	fedAt     time.Time
}

func (c *sessionClock) set(session string, renewedAt, fedAt time.Time) {
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

// stopBy is the earliest time another candidate could acquire a key of
// session without it having heard (see Options.FenceWindow).
func (c *sessionClock) stopBy(session string, opts Options) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if session != c.session || c.renewedAt.IsZero() {
		return time.Time{}
	}
	at := c.renewedAt.Add(opts.FenceWindow())
	if opts.FastFailover && !c.fedAt.IsZero() {
		at = minTime(at, c.fedAt.Add(opts.failoverTTL()))
	}
	return at
}

// publish hands evt to the bus, naming this candidate in an error.
func (e *engine) publish(evt any) {
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

// Supervision of the root's children: capped exponential backoff.
const (
	restartBase       = 100 * time.Millisecond
	restartMax        = 10 * time.Second
	restartResetAfter = 30 * time.Second
	// stopTimeout bounds a graceful stop when Consul does not answer.
	stopTimeout = 5 * time.Second
	// requestTimeout bounds a request that does not block by design (create
	// a session, acquire), so that a frozen agent shows as an error.
	requestTimeout = 10 * time.Second
)

// blockingTimeout bounds a blocking query that waits up to wait: Consul adds
// up to wait/16 of jitter; past that the connection is presumed dead.
func blockingTimeout(wait time.Duration) time.Duration { return wait + wait/16 + requestTimeout }

// NewProps validates opts and returns the Props of an election root: spawn it
// in your actor system (or as a child of your own actor) and it campaigns for
// opts.Resources and for every resource sent to it in a messages.Campaign.
//
// Events are published on the actor system's EventStream, from a goroutine of
// the engine's own (so a slow subscriber never delays a step-down); every
// event names the candidate, so several engines can share one system.
// listeners, if any, are also called with every event, synchronously on an
// actor's goroutine, so they must return at once.
//
// To stop gracefully, Request messages.Stop and wait for messages.Stopped:
// leaders release their keys (a standby takes over at once) and the session
// is destroyed. Stopping the root otherwise (poison, a parent's stop or
// restart) destroys the session without releasing first, so lock-delay
// applies before another candidate can lead.
func NewProps(opts Options, listeners ...func(event any)) (*actor.Props, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.CandidateID == "" {
		opts.CandidateID = defaultCandidateID()
	}
	logger := opts.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	logger = logger.With(zap.String("candidate", opts.CandidateID))
	backend, closeBackend := opts.Backend, func() {}
	if backend == nil {
		client, err := consul.NewClient(consul.Config{Address: opts.ConsulAddress, Datacenter: opts.Datacenter,
			Token: opts.Token, TokenFile: opts.TokenFile, TLS: opts.TLS})
		if err != nil {
			return nil, err
		}
		backend = client
		closeBackend = client.Close
	}
	base := engine{opts: opts, backend: backend, prefix: opts.KeyPrefix, logger: logger, closeBackend: closeBackend,
		clock: &sessionClock{}}
	if opts.FastFailover {
		failover, ok := backend.(FailoverBackend)
		if !ok {
			return nil, fmt.Errorf("FastFailover: the backend %T cannot register checks (it does not implement actors.FailoverBackend)", backend)
		}
		base.failover = failover
	}
	if opts.Observer != nil {
		listeners = append(listeners[:len(listeners):len(listeners)], opts.Observer.Event)
	}
	producer := func() actor.Actor { return &electionRoot{base: base, listeners: listeners} }
	strategy := &restartStrategy{base: restartBase, max: restartMax, resetAfter: restartResetAfter, logger: logger}
	return actor.PropsFromProducer(producer, actor.WithSupervisor(strategy)), nil
}

// electionRoot supervises the session, renewal, key watcher, health watcher
// and lock actors, and routes the conversation between them.
type electionRoot struct {
	base      engine
	listeners []func(any)
	eng       *engine

	session, renewal, keys, health *actor.PID
	locks                          map[string]*actor.PID
	metadata                       map[string]map[string]string

	current   messages.SessionReady // ID "" while there is no session
	entries   map[string]messages.KeyEntry
	synced    bool // the key watcher has answered once
	stopping  bool
	stopReply *actor.PID
	waiting   map[string]bool // locks still releasing during a stop
	work      *worker
}

type (
	stopTimedOut struct{}
	stopLocks    struct{}
)

func (r *electionRoot) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		r.start(c)
	case *messages.Campaign:
		r.campaign(c, m)
	case *messages.Resign:
		if pid, ok := r.locks[m.Resource]; ok {
			c.Send(pid, m)
		}
	case *messages.Withdraw:
		if pid, ok := r.locks[m.Resource]; ok {
			c.Send(pid, m)
		}
	case *messages.GetState:
		if pid, ok := r.locks[m.Resource]; ok {
			c.Forward(pid)
			return
		}
		c.Respond(&messages.State{Resource: m.Resource, Leader: leaderOf(m.Resource, r.entries[m.Resource])})
	case *messages.ChildStarted:
		r.childStarted(c, m)
	case *messages.SessionReady:
		if r.current.ID != "" && r.current.ID != m.ID {
			r.sessionGone(c, &messages.SessionGone{ID: r.current.ID, Reason: messages.ReasonSessionInvalidated})
		}
		r.current = *m
		r.toSessionUsers(c, m)
	case *messages.Renewed:
		if m.ID == r.current.ID {
			r.current.RenewedAt = m.SentAt
		}
	case *messages.CheckFed:
		if m.SessionID == r.current.ID {
			r.current.CheckFedAt = m.SentAt
			c.Send(r.renewal, m)
		}
	case *messages.SessionGone:
		if m.ID == r.current.ID && m.ID != "" {
			r.sessionGone(c, m)
		}
	case *messages.HealthCritical:
		if r.current.ID != "" {
			r.sessionGone(c, &messages.SessionGone{ID: r.current.ID, Reason: messages.ReasonHealthCheckCritical,
				Err: fmt.Errorf("health check %s is critical: %s", m.CheckID, m.Output)})
		}
	case *messages.KeysChanged:
		r.keysChanged(c, m)
	case *messages.Holding:
		c.Send(r.keys, m)
	case *messages.Releasing:
		c.Send(r.keys, m)
	case *messages.Stop:
		r.stop(c)
	case *messages.Released:
		r.released(c, m)
	case *messages.Stopped:
		r.finishStop(c)
	case *stopTimedOut:
		r.eng.logger.Warn("Consul did not answer in time; stopping without releasing everything")
		r.finishStop(c)
	case *actor.Restarting:
		r.work.stop()
		r.eng.bus.close()
	case *actor.Stopped:
		r.work.stop()
		r.eng.bus.close()
		r.eng.closeBackend()
	}
}

func (r *electionRoot) start(c actor.Context) {
	eng := r.base
	eng.bus = newEventBus(c.ActorSystem(), r.listeners, eng.logger)
	r.eng = &eng
	r.work = newWorker(c)
	r.locks, r.metadata, r.entries = map[string]*actor.PID{}, map[string]map[string]string{}, map[string]messages.KeyEntry{}
	// Each producer returns a fresh instance: a restarted child starts clean
	// and asks for the current state with ChildStarted.
	r.session = r.spawnChild(c, "session", func() actor.Actor { return &sessionActor{engine: r.eng} })
	r.renewal = r.spawnChild(c, "renewal", func() actor.Actor { return &renewalActor{engine: r.eng} })
	r.keys = r.spawnChild(c, "keys", func() actor.Actor { return &keyWatcher{engine: r.eng} })
	if r.eng.opts.HealthCheckID != "" || r.eng.opts.FastFailover {
		r.health = r.spawnChild(c, "health", func() actor.Actor { return &healthWatcher{engine: r.eng} })
	}
	for _, resource := range r.eng.opts.Resources {
		r.campaign(c, &messages.Campaign{Resource: resource})
	}
}

func (r *electionRoot) spawnChild(c actor.Context, name string, producer actor.Producer) *actor.PID {
	pid, err := c.SpawnNamed(actor.PropsFromProducer(producer), name)
	if err != nil {
		// Names are unique within this root; this cannot happen.
		panic(fmt.Sprintf("consul-elect: spawning %s: %v", name, err))
	}
	return pid
}

func (r *electionRoot) campaign(c actor.Context, m *messages.Campaign) {
	if err := ValidateResource(m.Resource); err != nil {
		r.eng.publish(messages.ElectionError{Resource: m.Resource, Op: "campaign", Err: err, At: time.Now()})
		return
	}
	if _, ok := r.locks[m.Resource]; ok || r.stopping {
		return
	}
	metadata := m.Metadata
	if metadata == nil {
		metadata = r.eng.opts.Metadata
	}
	resource := m.Resource
	r.locks[resource] = r.spawnChild(c, "lock-"+resource, func() actor.Actor {
		return &lockActor{engine: r.eng, resource: resource, key: r.eng.prefix + "/" + resource, metadata: metadata}
	})
}

// childStarted brings a (re)started child up to date.
func (r *electionRoot) childStarted(c actor.Context, m *messages.ChildStarted) {
	if c.Sender() == nil {
		return // children send it with Request, so that we know who asks
	}
	if r.current.ID != "" {
		ready := r.current
		c.Send(c.Sender(), &ready)
	}
	if m.Resource != "" && r.synced {
		c.Send(c.Sender(), &messages.KeyState{Resource: m.Resource, Entry: r.entryOf(m.Resource)})
	}
}

func (r *electionRoot) entryOf(resource string) messages.KeyEntry {
	if e, ok := r.entries[resource]; ok {
		return e
	}
	return messages.KeyEntry{Key: r.eng.prefix + "/" + resource, HolderLockDelay: -1}
}

// toSessionUsers sends m to every child that follows the session: the locks
// first when it says the session is gone (leaders step down before anything
// else), the watchers first when it names a new one (so that they know our
// session before the locks acquire with it).
func (r *electionRoot) toSessionUsers(c actor.Context, m any) {
	toLocks := func() {
		for _, pid := range r.locks {
			c.Send(pid, m)
		}
	}
	if _, gone := m.(*messages.SessionGone); gone {
		toLocks()
	}
	for _, pid := range []*actor.PID{r.renewal, r.keys, r.health} {
		if pid != nil {
			c.Send(pid, m)
		}
	}
	if _, gone := m.(*messages.SessionGone); !gone {
		toLocks()
	}
}

// sessionGone makes every leader step down, then has a new session created.
func (r *electionRoot) sessionGone(c actor.Context, m *messages.SessionGone) {
	level := zap.WarnLevel
	if r.stopping {
		level = zap.DebugLevel // our own destroy, seen by the key watcher
	}
	r.eng.logger.Log(level, "session gone", zap.String("session", m.ID), zap.String("reason", string(m.Reason)), zap.Error(m.Err))
	r.current = messages.SessionReady{}
	r.toSessionUsers(c, m)
	if !r.stopping {
		c.Send(r.session, m)
	}
}

func (r *electionRoot) keysChanged(c actor.Context, m *messages.KeysChanged) {
	if gone := m.SessionGone; gone != nil && gone.ID == r.current.ID && gone.ID != "" {
		r.sessionGone(c, gone)
	}
	for _, e := range m.Entries {
		resource := resourceOf(r.eng.prefix, e.Key)
		if e.Exists {
			r.entries[resource] = e
		} else {
			delete(r.entries, resource)
		}
		if pid, ok := r.locks[resource]; ok && r.synced {
			c.Send(pid, &messages.KeyState{Resource: resource, Entry: e})
		}
	}
	if !r.synced {
		r.synced = true
		for resource, pid := range r.locks {
			c.Send(pid, &messages.KeyState{Resource: resource, Entry: r.entryOf(resource)})
		}
	}
}

// stop: every lock releases its key, then the session is destroyed, then the
// root stops and answers Stopped.
func (r *electionRoot) stop(c actor.Context) {
	if r.stopping {
		return
	}
	r.stopping, r.stopReply = true, c.Sender()
	r.waiting = map[string]bool{}
	for resource, pid := range r.locks {
		r.waiting[resource] = true
		c.Send(pid, &messages.Stop{})
	}
	r.work.after(stopTimeout, &stopTimedOut{})
	if len(r.waiting) == 0 {
		c.Request(r.session, &messages.Stop{})
	}
}

func (r *electionRoot) released(c actor.Context, m *messages.Released) {
	if !r.stopping {
		if pid, ok := r.locks[m.Resource]; ok {
			delete(r.locks, m.Resource)
			c.Stop(pid)
		}
		return
	}
	delete(r.waiting, m.Resource)
	if len(r.waiting) == 0 {
		c.Request(r.session, &messages.Stop{})
	}
}

func (r *electionRoot) finishStop(c actor.Context) {
	if r.stopReply != nil {
		c.Send(r.stopReply, &messages.Stopped{})
		r.stopReply = nil
	}
	c.Stop(c.Self())
}

// leaderOf describes the holder of a key observed by the root.
func leaderOf(resource string, e messages.KeyEntry) messages.LeaderChanged {
	if e.Session == "" {
		return messages.LeaderChanged{Resource: resource}
	}
	return messages.LeaderChanged{Resource: resource, LeaderID: e.HolderID, Node: e.Node, Session: e.Session,
		FencingToken: e.ModifyIndex, Since: e.Since}
}
