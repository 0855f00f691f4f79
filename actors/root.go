package actors

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/protocol"
	"github.com/excalibur/consul-elect/internal/registry"
	"github.com/excalibur/consul-elect/messages"
	"go.uber.org/zap"
)

// electionRoot supervises the session, renewal, key watcher, health watcher
// and lock actors, and routes the conversation between them.
type electionRoot struct {
	base engine
	eng  *engine

	session, renewal, health, registry, service *actor.PID
	// watchers are the key watchers, one per shard of the key prefix.
	watchers []*actor.PID
	shards   []string
	answered map[string]bool // watchers (by id) that have answered once
	locks    map[string]*actor.PID
	order    []string // the resources of locks in campaign order; nil: to be worked out again

	appHealth    messages.SetHealth              // the application's, as it last said
	candidatesOf map[string][]messages.Candidate // live ones, by resource
	// campaignsChanged: the registry is to be told of the campaigns.
	campaignsChanged bool
	leading          map[string]bool  // resources this candidate leads
	pool             *pool            // the locks' dispatcher
	lockStrategy     *restartStrategy // one for every lock: it keeps no state
	// With Balance: the live, healthy peers campaigning for some of our
	// resources, with those resources (worked out every balanceEvery), and
	// whether the share is to be worked out again after a change.
	peers    map[string]map[string]bool
	shareDue bool

	current   protocol.SessionReady // ID "" while there is no session
	entries   map[string]protocol.KeyEntry
	synced    bool // the key watcher has answered once
	stopping  bool
	stopReply *actor.PID
	waiting   map[string]bool // locks still releasing during a stop
	// leaving: the registry entry is being released, as the engine stops;
	// unregistered: it is.
	leaving, unregistered bool
	calls                 *calls
}

type (
	balanceTick       struct{}
	shareTick         struct{}
	campaignsChanged  struct{}
	stopTimedOut      struct{}
	swept             struct{}
	switchoverWritten struct {
		resource string
		term     messages.LeaderChanged // that the request was written into
		replyTo  *actor.PID
		err      error
	}
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
			c.Forward(pid)
		} else if c.Sender() != nil {
			c.Respond(&messages.State{Resource: m.Resource, Leader: leaderOf(m.Resource, r.entries[m.Resource])})
		}
	case *messages.SetHealth:
		r.appHealth = *m
		c.Send(r.registry, m)
		for _, resource := range r.campaignOrder() {
			c.Send(r.locks[resource], m)
		}
	case *campaignsChanged:
		r.campaignsChanged = false
		c.Send(r.registry, &protocol.Campaigning{Resources: slices.Sorted(maps.Keys(r.locks))})
	case *protocol.CandidatesChanged:
		r.candidatesOf = indexCandidates(m.Candidates)
		for _, resource := range r.campaignOrder() {
			c.Send(r.locks[resource], &protocol.CandidatesChanged{Candidates: r.candidatesOf[resource]})
		}
	case *protocol.Leading:
		if m.Leading {
			r.leading[m.Resource] = true
		} else {
			delete(r.leading, m.Resource)
		}
		r.shareSoon()
		if r.service != nil {
			c.Send(r.service, m)
		}
	case *balanceTick:
		r.balance(c)
		r.calls.after(balanceEvery, &balanceTick{})
	case *shareTick:
		r.shareDue = false
		if r.balancing() {
			r.publishShare()
		}
	case *messages.Switchover:
		r.switchover(c, m)
	case *switchoverWritten:
		r.switchoverWritten(c, m)
	case *messages.Proclaim:
		if pid, ok := r.locks[m.Resource]; ok {
			c.Forward(pid)
		} else if c.Sender() != nil {
			c.Respond(messages.ElectionError{Resource: m.Resource, CandidateID: r.eng.opts.CandidateID, Op: "proclaim",
				Err: messages.ErrNotLeader, At: time.Now()})
		}
	case *messages.GetState:
		if pid, ok := r.locks[m.Resource]; ok {
			c.Forward(pid)
			return
		}
		c.Respond(&messages.State{Resource: m.Resource, Leader: leaderOf(m.Resource, r.entries[m.Resource]),
			Candidates: slices.Clone(r.candidatesOf[m.Resource])})
	case *protocol.ChildStarted:
		r.childStarted(c, m)
	case *protocol.SessionReady:
		if r.current.ID != "" && r.current.ID != m.ID {
			r.sessionGone(c, &protocol.SessionGone{ID: r.current.ID, Reason: messages.ReasonSessionInvalidated})
		}
		r.current = *m
		r.toSessionUsers(c, m)
	case *protocol.Renewed:
		if m.ID == r.current.ID {
			r.current.RenewedAt = m.SentAt
		}
	case *protocol.CheckFed:
		if m.SessionID == r.current.ID {
			r.current.CheckFedAt = m.SentAt
			c.Send(r.renewal, m)
		}
	case *protocol.SessionGone:
		if m.ID == r.current.ID && m.ID != "" {
			r.sessionGone(c, m)
		}
	case *protocol.HealthCritical:
		if r.current.ID != "" {
			r.sessionGone(c, &protocol.SessionGone{ID: r.current.ID, Reason: messages.ReasonHealthCheckCritical,
				Err: fmt.Errorf("health check %s is critical: %s", m.CheckID, m.Output)})
		}
	case *protocol.KeysChanged:
		r.keysChanged(c, m)
	case *keysDelivered:
		if from := c.Sender(); from != nil && slices.ContainsFunc(r.watchers, from.Equal) {
			r.record(m.entries)
			r.shareSoon()
		}
	case *protocol.Holding:
		c.Send(r.watcherOf(m.Key), m)
	case *protocol.Releasing:
		c.Send(r.watcherOf(m.Key), m)
	case *messages.Stop:
		r.stop(c)
	case *protocol.Released:
		r.released(c, m)
	case *unregistered:
		r.leaving, r.unregistered = false, true
		r.leave(c)
	case *swept:
		c.Request(r.session, &messages.Stop{})
	case *messages.Stopped:
		r.finishStop(c)
	case *stopTimedOut:
		r.eng.logger.Warn("Consul did not answer in time; stopping without releasing everything")
		r.finishStop(c)
	case *actor.Restarting:
		r.calls.stop()
		r.eng.bus.close()
		r.pool.close()
	case *actor.Stopped:
		r.calls.stop()
		r.eng.bus.close()
		r.pool.close()
		r.eng.closeBackend()
	}
}

func (r *electionRoot) start(c actor.Context) {
	eng := r.base
	eng.bus = newEventBus(c.ActorSystem(), eng.opts.Observer, eng.logger)
	r.calls = newCalls(c)
	eng.requests = r.calls.ctx
	r.eng = &eng
	r.locks, r.entries, r.leading = map[string]*actor.PID{}, map[string]protocol.KeyEntry{}, map[string]bool{}
	r.pool, r.lockStrategy = newPool(), newRestartStrategy(r.eng.logger, true)
	r.eng.share = new(atomic.Pointer[protocol.Share])
	r.eng.share.Store(&protocol.Share{})
	r.appHealth = messages.SetHealth{Healthy: true}
	// Each producer returns a fresh instance: a restarted child starts clean
	// and asks for the current state with ChildStarted.
	r.session = r.spawnChild(c, "session", func() actor.Actor { return &sessionActor{engine: r.eng} })
	r.renewal = r.spawnChild(c, "renewal", func() actor.Actor { return &renewalActor{engine: r.eng} })
	r.watch(c, shardPrefixes(r.eng.opts.Resources, max(1, r.eng.opts.MaxConnections-longPollsBeside)))
	r.registry = r.spawnChild(c, "registry", func() actor.Actor { return &registryActor{engine: r.eng} })
	if r.eng.opts.Service.Name != "" {
		r.service = r.spawnChild(c, "service", func() actor.Actor { return &serviceActor{engine: r.eng} })
	}
	if r.eng.opts.HealthCheckID != "" || r.eng.opts.FastFailover {
		r.health = r.spawnChild(c, "health", func() actor.Actor { return &healthWatcher{engine: r.eng} })
	}
	for _, resource := range inCampaignOrder(r.eng.opts.Resources, r.eng.opts.CandidateID) {
		r.campaign(c, &messages.Campaign{Resource: resource})
	}
	if r.eng.opts.Balance {
		r.calls.after(balanceEvery, &balanceTick{})
	}
}

// inCampaignOrder is resources in the order this candidate campaigns for
// them. Candidates that campaign for the same resources at once then start
// from different keys instead of racing for the same ones, which would make
// whole transactions of acquires fail.
//
// The resources are sorted and cut into blocks of campaignBlock. Each block
// is walked from an offset of this candidate's own, campaignRun keys (about
// one transaction) from each block in turn. A candidate's first keys in a
// block are its own until it reaches the next candidate's offset there, so
// its share of the block is the gap between the two; with offsets drawn
// afresh in each block, its share of all of them is close to fair, where one
// offset for all would leave it one random gap.
func inCampaignOrder(resources []string, candidate string) []string {
	sorted := slices.Sorted(slices.Values(resources))
	var blocks [][]string
	for block := range slices.Chunk(sorted, campaignBlock) {
		offset := int(mix(rendezvous("block "+strconv.Itoa(len(blocks)), candidate)) % uint64(len(block)))
		blocks = append(blocks, slices.Concat(block[offset:], block[:offset]))
	}
	order := make([]string, 0, len(sorted))
	for from := 0; len(order) < len(sorted); from += campaignRun {
		for _, block := range blocks {
			if from < len(block) {
				order = append(order, block[from:min(from+campaignRun, len(block))]...)
			}
		}
	}
	return order
}

// The blocks of inCampaignOrder, and the run of each taken in turn: about one
// transaction of acquires. Smaller blocks share out more fairly, but a run
// that crosses into another candidate's part of a block fails its
// transaction, and they cross more often.
const (
	campaignBlock = 1024
	campaignRun   = 128
)

// mix spreads h's bits over all of it (MurmurHash3's finaliser): the offsets
// of candidates named alike are then unrelated in every block.
func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	return h ^ h>>33
}

// campaignOrder is the resources of the locks in inCampaignOrder. Whatever
// the root tells every lock goes in it: a lock's mailbox runs in the order
// it was woken, so that the acquires reach the client's batches in it.
func (r *electionRoot) campaignOrder() []string {
	if r.order == nil {
		r.order = inCampaignOrder(slices.Collect(maps.Keys(r.locks)), r.eng.opts.CandidateID)
	}
	return r.order
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
	if r.stopping {
		return
	}
	if pid, ok := r.locks[m.Resource]; ok {
		c.Send(pid, m) // it may bring a Worker
		return
	}
	if shardOf(r.shards, m.Resource) < 0 {
		r.watch(c, []string{""})
	}
	metadata := m.Metadata
	if metadata == nil {
		metadata = r.eng.opts.Metadata
	}
	resource, worker := m.Resource, m.Worker
	producer := func() actor.Actor {
		return &lockActor{engine: r.eng, resource: resource, key: r.eng.prefix + "/" + resource, metadata: metadata, workerProps: worker,
			session: noSession}
	}
	// A prefix, not a name: a withdrawn lock may still be stopping when the
	// resource is campaigned for again. The lock-free mailbox costs a lock
	// tens of bytes while empty, the default's ring a few hundred.
	props := actor.PropsFromProducer(producer, actor.WithSupervisor(r.lockStrategy),
		actor.WithDispatcher(r.pool), actor.WithMailbox(actor.UnboundedLockfree()))
	r.locks[resource] = c.SpawnPrefix(props, "lock-"+resource+"-")
	r.order = nil
	r.campaigning(c)
}

// childStarted brings a (re)started child up to date: a lock learns the
// application's health and the candidates before the key, so that it does
// not acquire first and ask after.
func (r *electionRoot) childStarted(c actor.Context, m *protocol.ChildStarted) {
	child := c.Sender()
	if child == nil {
		return // children send it with Request, so that we know who asks
	}
	if m.Resource != "" || child.Equal(r.registry) {
		health := r.appHealth
		c.Send(child, &health)
	}
	if m.Resource != "" {
		c.Send(child, &protocol.CandidatesChanged{Candidates: r.candidatesOf[m.Resource]})
	}
	if child.Equal(r.registry) {
		r.campaigning(c)
	}
	if r.current.ID != "" {
		ready := r.current
		c.Send(child, &ready)
	}
	if m.Resource != "" && r.synced {
		// The watcher of its shard sends it its key's state, in order with
		// the changes it sends it directly.
		c.Send(r.watcherOf(r.eng.prefix+"/"+m.Resource), &resendKey{resource: m.Resource, lock: child})
	}
	if i := slices.IndexFunc(r.watchers, child.Equal); i >= 0 {
		c.Send(child, &lockRoutes{locks: r.locksOf()[i], direct: r.synced})
	}
}

func (r *electionRoot) entryOf(resource string) protocol.KeyEntry {
	if e, ok := r.entries[resource]; ok {
		return e
	}
	return protocol.KeyEntry{Key: r.eng.prefix + "/" + resource, HolderLockDelay: -1}
}

// toSessionUsers sends m to every child that follows the session: the locks
// first when it says the session is gone (leaders step down before anything
// else), the watchers first when it names a new one (so that they know our
// session before the locks acquire with it).
func (r *electionRoot) toSessionUsers(c actor.Context, m any) {
	toLocks := func() {
		for _, resource := range r.campaignOrder() {
			c.Send(r.locks[resource], m)
		}
	}
	if _, gone := m.(*protocol.SessionGone); gone {
		toLocks()
	}
	for _, pid := range append([]*actor.PID{r.renewal, r.health, r.registry}, r.watchers...) {
		if pid != nil {
			c.Send(pid, m)
		}
	}
	if _, gone := m.(*protocol.SessionGone); !gone {
		toLocks()
	}
}

// sessionGone makes every leader step down, then has a new session created.
func (r *electionRoot) sessionGone(c actor.Context, m *protocol.SessionGone) {
	level := zap.WarnLevel
	if r.stopping {
		level = zap.DebugLevel // our own destroy, seen by the key watcher
	}
	r.eng.logger.Log(level, "session gone", zap.String("session", m.ID), zap.String("reason", string(m.Reason)), zap.Error(m.Err))
	r.current = protocol.SessionReady{}
	r.toSessionUsers(c, m)
	if !r.stopping {
		c.Send(r.session, m)
	}
}

func (r *electionRoot) keysChanged(c actor.Context, m *protocol.KeysChanged) {
	from := c.Sender()
	if from == nil || !slices.ContainsFunc(r.watchers, from.Equal) {
		return // a watcher of shards given up
	}
	if gone := m.SessionGone; gone != nil && gone.ID == r.current.ID && gone.ID != "" {
		r.sessionGone(c, gone)
	}
	r.record(m.Entries)
	if r.synced {
		for _, e := range m.Entries {
			resource := resourceOf(r.eng.prefix, e.Key)
			if pid, ok := r.locks[resource]; ok {
				c.Send(pid, &protocol.KeyState{Resource: resource, Entry: e})
			}
		}
	}
	defer c.Send(from, &keysPassedOn{msg: m}) // after the entries are passed on
	if !r.synced {
		r.answered[from.Id] = true
		if len(r.answered) < len(r.watchers) {
			return // the locks learn of their keys once every shard is known
		}
		r.synced = true
		for _, resource := range r.campaignOrder() {
			c.Send(r.locks[resource], &protocol.KeyState{Resource: resource, Entry: r.entryOf(resource)})
		}
		// From now on each watcher sends the changes to the locks itself.
		for i, locks := range r.locksOf() {
			c.Send(r.watchers[i], &lockRoutes{locks: locks, direct: true})
		}
	}
}

// record keeps the entries the watchers reported, for State, Balance and a
// lock that starts before every shard is known.
func (r *electionRoot) record(entries []protocol.KeyEntry) {
	for _, e := range entries {
		resource := resourceOf(r.eng.prefix, e.Key)
		if e.Exists {
			r.entries[resource] = e
		} else {
			delete(r.entries, resource)
		}
		if _, campaigning := r.locks[resource]; e.Exists && e.Session == r.current.ID && r.current.ID != "" && !campaigning {
			r.releaseStray(e)
		}
	}
}

// releaseStray releases a key our session holds for a resource this
// candidate does not campaign for: one handed over as the campaign ended.
func (r *electionRoot) releaseStray(e protocol.KeyEntry) {
	session, key := r.current.ID, e.Key
	r.eng.logger.Info("releasing a key handed over after its campaign ended", zap.String("key", key))
	r.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, destroyTimeout)
		defer cancel()
		if err := r.eng.backend.Release(ctx, key, session, consul.EncodeValue(consul.Value{CandidateID: e.HolderID, Node: e.Node, AcquiredAt: e.Since, Released: true})); err != nil {
			r.eng.logger.Warn("could not release a key handed over after its campaign ended", zap.String("key", key), zap.Error(err))
		}
		return nil
	})
}

// locksOf groups the lock actors by the watcher of their key's shard.
func (r *electionRoot) locksOf() []map[string]*actor.PID {
	of := make([]map[string]*actor.PID, len(r.watchers))
	for i := range of {
		of[i] = map[string]*actor.PID{}
	}
	for resource, pid := range r.locks {
		of[max(shardOf(r.shards, resource), 0)][resource] = pid
	}
	return of
}

// watch starts a key watcher for each shard, in place of any before: when a
// campaign comes for a resource no shard covers, the root watches the whole
// prefix again. The locks keep what they know meanwhile.
func (r *electionRoot) watch(c actor.Context, shards []string) {
	for _, pid := range r.watchers {
		c.Stop(pid)
	}
	r.shards, r.watchers, r.answered = shards, nil, map[string]bool{}
	for _, shard := range shards {
		r.watchers = append(r.watchers, c.SpawnPrefix(actor.PropsFromProducer(func() actor.Actor {
			return &keyWatcher{engine: r.eng, shard: shard, shards: len(shards)}
		}), "keys-"))
	}
	if len(shards) > 1 {
		r.eng.logger.Info("the key watch is sharded", zap.Strings("shards", shards))
	}
	if r.current.ID != "" {
		ready := r.current
		for _, pid := range r.watchers {
			c.Send(pid, &ready)
		}
	}
}

// watcherOf is the watcher of key's shard.
func (r *electionRoot) watcherOf(key string) *actor.PID {
	return r.watchers[max(shardOf(r.shards, resourceOf(r.eng.prefix, key)), 0)]
}

// stop: every lock releases its key, then the session is destroyed, then the
// root stops and answers Stopped.
func (r *electionRoot) stop(c actor.Context) {
	if r.stopping {
		return
	}
	r.stopping, r.stopReply = true, c.Sender()
	r.waiting = map[string]bool{}
	_, transfers := r.eng.backend.(Transferrer)
	if r.leaving = transfers && r.registry != nil && r.current.ID != ""; r.leaving {
		// Out of the registry first, beside the releases: the others then
		// stop handing keys to this candidate.
		c.Request(r.registry, &unregister{})
	}
	// In the keys' order: the releases then batch by key, and each
	// transaction wakes the watchers of one or two shards, not of all.
	for _, resource := range slices.Sorted(maps.Keys(r.locks)) {
		r.waiting[resource] = true
		c.Send(r.locks[resource], &messages.Stop{})
	}
	r.calls.after(r.eng.opts.DrainTimeout+stopTimeout, &stopTimedOut{})
	r.leave(c)
}

// leave ends the stop once every lock has released its key. With a
// Transferrer, another candidate may have handed this one a key meanwhile.
// Its registry entry went first, which every later transfer checks: once
// that is answered too, one reading of each shard finds what was handed over
// before, and releases it. Only then is the session destroyed, which would
// free those keys with a lock-delay.
func (r *electionRoot) leave(c actor.Context) {
	switch {
	case len(r.waiting) > 0:
	case r.leaving:
		// unregistered follows
	case r.unregistered:
		r.sweep()
	default:
		c.Request(r.session, &messages.Stop{})
	}
}

// sweep releases the keys held by our session that no lock of ours wants:
// handed over after its campaign was withdrawn, or once this candidate was
// stopping.
func (r *electionRoot) sweep() {
	session, prefix, shards := r.current.ID, r.eng.prefix, r.shards
	if session == "" {
		r.calls.deliver(&swept{}) // gone: it holds nothing
		return
	}
	r.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, stopTimeout)
		defer cancel()
		var wg sync.WaitGroup // the releases batch together
		for _, shard := range shards {
			entries, _, err := r.eng.backend.ListPrefix(ctx, prefix+"/"+shard, 0, 0)
			if err != nil {
				r.eng.logger.Warn("could not read the keys before destroying the session", zap.Error(err))
				break
			}
			for _, e := range entries {
				if e.Session == session {
					wg.Go(func() {
						if err := r.eng.backend.Release(ctx, e.Key, session, consul.ReleasedValue(e.Value)); err != nil {
							r.eng.logger.Warn("could not release a key handed over while stopping", zap.String("key", e.Key), zap.Error(err))
						}
					})
				}
			}
		}
		wg.Wait()
		return &swept{}
	})
}

func (r *electionRoot) released(c actor.Context, m *protocol.Released) {
	if !r.stopping {
		if pid, ok := r.locks[m.Resource]; ok {
			delete(r.locks, m.Resource)
			r.order = nil
			c.Send(r.watcherOf(r.eng.prefix+"/"+m.Resource), &lockRoutes{locks: map[string]*actor.PID{m.Resource: nil}})
			c.Stop(pid)
			r.campaigning(c)
		}
		return
	}
	if !r.waiting[m.Resource] {
		return // a key handed over after the lock was done, released again
	}
	delete(r.waiting, m.Resource)
	r.leave(c)
}

func (r *electionRoot) finishStop(c actor.Context) {
	if r.stopReply != nil {
		c.Send(r.stopReply, &messages.Stopped{})
		r.stopReply = nil
	}
	c.Stop(c.Self())
}

// leaderOf describes the holder of a key observed by the root.
func leaderOf(resource string, e protocol.KeyEntry) messages.LeaderChanged {
	if e.Session == "" {
		return messages.LeaderChanged{Resource: resource}
	}
	return messages.LeaderChanged{Resource: resource, LeaderID: e.HolderID, Node: e.Node, Session: e.Session,
		FencingToken: e.FencingToken, Since: e.Since, Metadata: e.Metadata}
}

// campaigning has the registry told what this candidate campaigns for, once
// the messages already in the mailbox are handled: a thousand campaigns in a
// row are one list, not a thousand.
func (r *electionRoot) campaigning(c actor.Context) {
	if !r.campaignsChanged {
		r.campaignsChanged = true
		c.Send(c.Self(), &campaignsChanged{})
	}
}

// indexCandidates maps each resource to the candidates campaigning for it,
// in the registry's order (highest priority first). The resources that the
// same candidates campaign for share one list, which nobody may change: a
// fleet's candidates mostly campaign for the same resources, and a list for
// each resource would hold every candidate once per resource.
func indexCandidates(all []messages.Candidate) map[string][]messages.Candidate {
	members := map[string][]byte{} // resource → the indices in all of its candidates, as uvarints
	for i, c := range all {
		for _, resource := range c.Resources {
			members[resource] = binary.AppendUvarint(members[resource], uint64(i))
		}
	}
	lists := map[string][]messages.Candidate{} // by members
	of := make(map[string][]messages.Candidate, len(members))
	for resource, m := range members {
		list, ok := lists[string(m)]
		if !ok {
			for rest := m; len(rest) > 0; {
				i, n := binary.Uvarint(rest)
				list, rest = append(list, all[i]), rest[n:]
			}
			lists[string(m)] = list
		}
		of[resource] = list
	}
	return of
}

// switchover writes a switchover request into the resource's key, off the
// mailbox; its leader, wherever it runs, carries it out.
func (r *electionRoot) switchover(c actor.Context, m *messages.Switchover) {
	replyTo, resource, to := c.Sender(), m.Resource, m.To
	r.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		_, term, err := registry.RequestHandover(ctx, r.eng.backend, r.eng.prefix, resource, to)
		return &switchoverWritten{resource: resource, term: term, replyTo: replyTo, err: err}
	})
}

func (r *electionRoot) switchoverWritten(c actor.Context, m *switchoverWritten) {
	if m.replyTo == nil {
		if m.err != nil {
			r.eng.publish(messages.ElectionError{Resource: m.resource, Op: "switchover", Err: m.err, At: time.Now()})
		}
		return
	}
	if m.err != nil {
		c.Send(m.replyTo, messages.ElectionError{Resource: m.resource, CandidateID: r.eng.opts.CandidateID, Op: "switchover", Err: m.err, At: time.Now()})
		return
	}
	// The term asked to hand over, not the key as the watcher shows it now:
	// the handover may already have happened.
	c.Send(m.replyTo, &messages.State{Resource: m.resource, Leader: m.term,
		Candidates: slices.Clone(r.candidatesOf[m.resource])})
}
