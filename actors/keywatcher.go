package actors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/backoff"
	"github.com/excalibur/consul-elect/internal/protocol"
	"github.com/excalibur/consul-elect/messages"
	"go.uber.org/zap"
)

// keyWatcher keeps one blocking query over <KeyPrefix>/ and sends every entry
// that changed to the lock of its resource and to the root, which records it
// (see deliver). One query serves every resource of the engine, so
// the engine holds one long-poll connection to Consul however many resources
// it elects (a query per key would reach the agent's per-client connection
// limit at ~200 keys).
//
// It also learns the lock-delay of each session seen holding a key, while the
// session is alive, so that a lock actor knows when a key freed by an
// invalidated session can be locked again.
type keyWatcher struct {
	*engine
	// shard is the start of the resource names this watcher lists ("": all
	// of <KeyPrefix>/), one of shards; see shardPrefixes.
	shard      string
	shards     int
	quick      int // blocking queries in a row that answered at once
	calls      *calls
	index      uint64
	checking   uint64 // an early answer's index, while it is read again (see listed)
	entries    map[string]consul.Entry
	last       []consul.Entry           // the last listing, for a Relister
	lockDelays map[string]time.Duration // holder session → its lock-delay
	asked      map[string]bool          // sessions whose info was requested
	session    string                   // ours
	node       string                   // our session's node
	lost       bool                     // our session is gone, and no other is ready yet
	listing    query
	retry      backoff.Backoff
	pending    *protocol.KeysChanged // waiting for the check of our session
	releasing  map[string]bool       // keys our locks release themselves
	synced     bool                  // the first answer was sent

	// Where changes go (see deliver).
	locks       map[string]*actor.PID // resource → its lock, for this shard's resources
	direct      bool                  // the root has given every lock its first state
	throughRoot *protocol.KeysChanged // the last change sent through the root, until it says it passed it on
	resends     map[string]bool       // locks that asked for their key's state before the first answer
}

// Results of the watcher's own calls.
type (
	listed struct {
		listing uint64
		entries []consul.Entry
		waited  uint64 // the index the query waited at
		index   uint64
		took    time.Duration
		err     error
	}
	relist        struct{}
	sessionLooked struct {
		id        string
		lockDelay time.Duration
		gone      bool
	}
	ourSessionChecked struct{ gone *protocol.SessionGone }
)

// The watcher's conversation with the root about where changes go.
type (
	// lockRoutes, from the root: the lock of each resource of the shard (nil:
	// none any more), and direct once the root has given every lock its
	// first state (then it stays so).
	lockRoutes struct {
		locks  map[string]*actor.PID
		direct bool
	}
	// keysDelivered, to the root: changes the watcher has sent to the locks
	// itself; the root records them.
	keysDelivered struct{ entries []protocol.KeyEntry }
	// keysPassedOn, from the root: it has handled a KeysChanged of the
	// watcher's and passed its entries on to the locks.
	keysPassedOn struct{ msg *protocol.KeysChanged }
	// resendKey, from the root: lock (of resource) started after the first
	// states were sent, or restarted; send it the key's state.
	resendKey struct {
		resource string
		lock     *actor.PID
	}
)

// watchWait is how long one blocking query waits at most.
const watchWait = 5 * time.Minute

func (w *keyWatcher) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		w.calls = newCalls(c)
		w.retry = backoff.New(100*time.Millisecond, 5*time.Second)
		w.entries = map[string]consul.Entry{}
		w.lockDelays = map[string]time.Duration{}
		w.asked = map[string]bool{}
		w.releasing = map[string]bool{}
		w.locks, w.resends = map[string]*actor.PID{}, map[string]bool{}
		w.list()
		c.Request(c.Parent(), &protocol.ChildStarted{})
	case *protocol.SessionReady:
		w.session, w.node = m.ID, m.Node
		if w.lost && w.listing.inFlight() {
			// A session is lost mostly while the agent does not answer. The
			// query in flight may have been sent into a connection that no
			// longer leads anywhere, to hang until its timeout, minutes after
			// the agent answers again, while the locks campaign with the new
			// session by what the watcher last showed: ask again.
			w.list()
		}
		w.lost = false
	case *protocol.SessionGone:
		if m.ID == w.session {
			w.session, w.lost = "", true
		}
	case *protocol.Holding:
		w.expect(c, m)
	case *protocol.Releasing:
		w.releasing[m.Key] = true
	case *relist:
		w.list()
	case *listed:
		if w.listing.answered(m.listing) {
			w.listed(c, m)
		}
	case *ourSessionChecked:
		if w.pending != nil {
			w.pending.SessionGone = m.gone
			w.deliver(c, w.pending)
			w.pending = nil
		}
		w.list()
	case *lockRoutes:
		for resource, pid := range m.locks {
			if pid == nil {
				delete(w.locks, resource)
			} else {
				w.locks[resource] = pid
			}
		}
		w.direct = w.direct || m.direct
	case *keysPassedOn:
		if m.msg == w.throughRoot {
			w.throughRoot = nil
		}
	case *resendKey:
		w.locks[m.resource] = m.lock
		if !w.synced {
			w.resends[m.resource] = true // sent with the first answer
			return
		}
		w.deliver(c, &protocol.KeysChanged{Entries: []protocol.KeyEntry{w.current(w.prefix + "/" + m.resource)}})
	case *sessionLooked:
		if m.gone {
			delete(w.asked, m.id)
		} else {
			w.lockDelays[m.id] = m.lockDelay
		}
	case *actor.Stopping, *actor.Restarting:
		w.calls.stop()
	}
}

// A watcher of a large watch (every shard's listing together above
// settleAbove) that is in a burst of changes waits, before reading again, as
// long as reading the whole watch takes: every change returns the whole
// listing, and while thousands of keys are being acquired back to back (in
// every shard at once), reading after each transaction would cost more than
// the acquiring itself. A burst shows as a listing with more than
// settleBurst changes, or as settleRun blocking queries in a row that
// answered within settleQuick, without having had to wait (a release and the
// next leader's acquisition are two quick ones, not a burst). Otherwise, or
// for a small watch, it reads again at once, so that the next change is seen
// as soon as it is made.
//
// The pause is at most settleMax, or settleFreed after a listing that showed
// keys freed or handed over, to us or to another: a candidate stopping
// releases or hands over thousands of keys in a row, which the others wait
// for (a listing that shows the first keys handed to others may come before
// the transactions that hand keys to us), while a burst of acquisitions (a
// cold start) only tells the others what they need not try.
const (
	settleAbove = 1000
	settleBurst = 16
	settleQuick = 50 * time.Millisecond
	settleRun   = 3
	settleMax   = time.Second
	settleFreed = 300 * time.Millisecond
)

// next starts the next blocking query, after a pause in a burst of a large
// watch; changed are the entries the listing changed.
func (w *keyWatcher) next(m *listed, changed []protocol.KeyEntry) {
	if pause := w.settle(m, changed); pause > 0 {
		w.calls.after(pause, &relist{})
		return
	}
	w.list()
}

// settle is the pause before the next blocking query; 0 reads again at once.
func (w *keyWatcher) settle(m *listed, changed []protocol.KeyEntry) time.Duration {
	if m.took < settleQuick {
		w.quick++
	} else {
		w.quick = 0
	}
	burst := len(changed) > settleBurst || w.quick >= settleRun
	if !burst || len(m.entries)*w.shards <= settleAbove {
		return 0
	}
	limit := settleMax
	if slices.ContainsFunc(changed, func(e protocol.KeyEntry) bool {
		return e.Exists && (e.Session == "" || e.From != "")
	}) {
		limit = settleFreed
	}
	return min(m.took*time.Duration(w.shards), limit)
}

// list starts the next blocking query, in place of the one in flight if
// there is one (whose answer is then dropped).
func (w *keyWatcher) list() {
	index, last, prefix := w.index, w.last, w.prefix+"/"+w.shard
	ctx, listing := w.listing.start(w.calls, blockingTimeout(watchWait))
	w.calls.run(func(context.Context) any {
		start := time.Now()
		entries, next, err := w.read(ctx, prefix, index, last)
		return &listed{listing: listing, entries: entries, waited: index, index: next, took: time.Since(start), err: err}
	})
}

// read lists the shard, given the last listing when the backend can use it.
// It runs off the actor: it reads nothing of the watcher's state.
func (w *keyWatcher) read(ctx context.Context, prefix string, index uint64, last []consul.Entry) ([]consul.Entry, uint64, error) {
	if r, ok := w.backend.(Relister); ok {
		return r.Relist(ctx, prefix, index, watchWait, last)
	}
	return w.backend.ListPrefix(ctx, prefix, index, watchWait)
}

func (w *keyWatcher) listed(c actor.Context, m *listed) {
	if m.err != nil {
		// The agent may have restarted with a lower index; a blocking query
		// at our old index would then wait for minutes. Read afresh.
		w.index = 0
		w.consulError("watch keys", m.err)
		wait := w.retry.Next()
		if w.retry.Failures() == 1 {
			w.publish(messages.ElectionError{Op: "watch " + w.prefix + "/" + w.shard, Err: m.err, At: time.Now()})
		}
		w.logger.Warn("watching the lock keys failed; retrying", zap.Error(m.err), zap.Duration("in", wait))
		w.calls.after(wait, &relist{})
		return
	}
	w.retry.Reset()
	w.last = m.entries
	// When Consul's state is replaced (a snapshot restore), a blocking query
	// in flight answers at once with the old state and the index it waited
	// at, as if nothing had changed; a query at that index would then wait
	// its whole wait, blind to the restored state, whose index is lower.
	// Such an early answer without a change is read again at once, without
	// blocking.
	if w.synced && m.index == m.waited && m.waited > 0 && m.took < watchWait/2 {
		w.checking, w.index = m.waited, 0
		w.list()
		return
	}
	// An index that went backwards means Consul's state was replaced: below
	// the one just checked, or reset to 0 by the backend
	// (blocking.NextIndex), in which case the next read answers at once with
	// the real index.
	restored := w.synced && (m.index == 0 || m.index < w.checking)
	w.checking = 0
	if restored {
		w.logger.Warn("Consul's index went back (a snapshot restore?); every lock rereads its key",
			zap.String("prefix", w.prefix+"/"+w.shard), zap.Uint64("index", m.index))
	}
	// The first answer is sent even when empty: it tells the locks their
	// keys do not exist.
	first := !w.synced
	w.synced = true
	w.index = m.index
	changed, lostOurs := w.diff(m.entries, m.index, restored)
	if len(changed) == 0 && !first {
		w.list()
		return
	}
	if first {
		for resource := range w.resends {
			key := w.prefix + "/" + resource
			if !slices.ContainsFunc(changed, func(e protocol.KeyEntry) bool { return e.Key == key }) {
				changed = append(changed, w.current(key))
			}
		}
		clear(w.resends)
	}
	msg := &protocol.KeysChanged{Entries: changed}
	if !lostOurs {
		w.deliver(c, msg)
		w.next(m, changed)
		return
	}
	// Keys our session held were released. If Consul invalidated the
	// session (destroyed by an operator, expired, its health check went
	// critical), every leader must step down with that reason: ask, then
	// tell the root.
	w.pending = msg
	id, node := w.session, w.node
	w.calls.run(func(ctx context.Context) any {
		if !w.sessionGone(ctx, id) {
			return &ourSessionChecked{}
		}
		gone := &protocol.SessionGone{ID: id, Reason: messages.ReasonSessionInvalidated}
		if check := w.opts.HealthCheckID; check != "" {
			if state, _, err := w.backend.NodeCheck(ctx, node, check, 0, 0); err == nil && state.Critical() {
				gone.Reason = messages.ReasonHealthCheckCritical
				gone.Err = fmt.Errorf("health check %s is critical: %s", check, state.Output)
			}
		}
		return &ourSessionChecked{gone: gone}
	})
}

// deliver sends changed entries on. Once the root has given every lock its
// first state, the watcher sends each entry straight to the lock of its
// resource, one hop fewer on the way from a release to the standby's
// acquire, and tells the root, which records them for State and Balance.
// Until then, and while a change that may say our session is gone waits for
// the check of the session, and for that change (the root makes every
// leader step down first), they go through the root, which
// passes the entries on; later changes follow the same way until the root
// says it has (keysPassedOn), so that a lock never sees an older entry
// after a newer one.
func (w *keyWatcher) deliver(c actor.Context, msg *protocol.KeysChanged) {
	if !w.direct || w.throughRoot != nil || w.pending != nil {
		w.throughRoot = msg
		c.Request(c.Parent(), msg)
		return
	}
	for _, e := range msg.Entries {
		resource := resourceOf(w.prefix, e.Key)
		if pid, ok := w.locks[resource]; ok {
			c.Send(pid, &protocol.KeyState{Resource: resource, Entry: e})
		}
	}
	c.Request(c.Parent(), &keysDelivered{entries: msg.Entries})
}

// current is key's entry as of the last listing.
func (w *keyWatcher) current(key string) protocol.KeyEntry {
	e, ok := w.entries[key]
	if !ok {
		return protocol.KeyEntry{Key: key, Observed: w.index, HolderLockDelay: -1}
	}
	entry := w.decode(e)
	entry.Observed = w.index
	return entry
}

// sessionGone asks Consul whether session id is gone, trying again on a
// transient error (a 500 while Consul's servers elect a leader) for up to a
// second; an answer it never got counts as not gone.
func (w *keyWatcher) sessionGone(ctx context.Context, id string) bool {
	retry := backoff.New(100*time.Millisecond, 400*time.Millisecond)
	for attempt := 0; ; attempt++ {
		call, cancel := context.WithTimeout(ctx, time.Second)
		_, err := w.backend.SessionInfo(call, id)
		cancel()
		if errors.Is(err, consul.ErrSessionGone) {
			return true
		}
		if err == nil || !consul.Retryable(err) || attempt == 3 {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(retry.Next()):
		}
	}
}

// diff updates the snapshot and returns the entries that changed (deleted
// keys with Exists false) and whether a key held by our session lost it.
// After Consul's state was replaced (restored), every entry is marked so.
//
// The snapshot is updated in place: a listing that only changes entries, as
// most do, allocates nothing for it.
func (w *keyWatcher) diff(list []consul.Entry, observed uint64, restored bool) (changed []protocol.KeyEntry, lostOurs bool) {
	listed := 0
	for _, e := range list {
		if !isLockKey(w.prefix, e.Key) {
			continue
		}
		listed++
		old, existed := w.entries[e.Key]
		w.entries[e.Key] = e
		if existed && old.ModifyIndex == e.ModifyIndex && old.Session == e.Session && old.Flags == e.Flags {
			continue
		}
		entry := w.decode(e)
		entry.Observed, entry.Restored = observed, restored
		if e.Session == "" && existed && old.Session != "" {
			// Freed: the lock-delay that may apply is the last holder's.
			entry.HolderLockDelay = w.holderLockDelay(old.Session)
		}
		switch {
		case w.releasing[e.Key]:
		case existed && old.Session != "" && old.Session == w.session && e.Session != w.session:
			lostOurs = true
		case e.Session == "" && entry.HolderID == w.opts.CandidateID && w.session != "":
			// Freed in our name: possibly by our session's end, of a key
			// it acquired after the last listing.
			lostOurs = true
		}
		if e.Session != w.session {
			delete(w.releasing, e.Key)
		}
		changed = append(changed, entry)
	}
	if len(w.entries) > listed {
		// Keys not listed: deleted, or an acquisition's stand-in.
		inList := make(map[string]bool, listed)
		for _, e := range list {
			inList[e.Key] = true
		}
		for key, old := range w.entries {
			switch {
			case inList[key]:
			case old.ModifyIndex > observed && !restored:
				// A stand-in (expect) newer than this listing, which was
				// read before it: kept for the next listing.
			default:
				changed = append(changed, protocol.KeyEntry{Key: key, Observed: observed, Restored: restored, HolderLockDelay: w.holderLockDelay(old.Session)})
				if old.Session != "" && old.Session == w.session && !w.releasing[key] {
					lostOurs = true
				}
				delete(w.releasing, key)
				delete(w.entries, key)
			}
		}
	}
	w.forgetSessions()
	return changed, lostOurs
}

// expect takes in a lock's acquisition. If the last listing is older than
// it, the acquired entry stands in for the key until the next listing, so
// that a deletion or a takeover before that listing shows as a change. If the
// listing is newer, it already tells what became of the key: say it again.
func (w *keyWatcher) expect(c actor.Context, m *protocol.Holding) {
	if w.index < m.Token || !w.synced {
		if old, ok := w.entries[m.Key]; !ok || old.ModifyIndex < m.Token {
			w.entries[m.Key] = consul.Entry{Key: m.Key, Session: m.Session, Flags: consul.KeyFlags, ModifyIndex: m.Token}
		}
		return
	}
	if w.pending != nil {
		// The listing waits for the check of our session: so does this.
		w.pending.Entries = append(w.pending.Entries, w.current(m.Key))
		return
	}
	w.deliver(c, &protocol.KeysChanged{Entries: []protocol.KeyEntry{w.current(m.Key)}})
}

// decode turns a Consul entry into a KeyEntry, asking for the holder
// session's lock-delay the first time it is seen.
func (w *keyWatcher) decode(e consul.Entry) protocol.KeyEntry {
	entry := protocol.KeyEntry{
		Key: e.Key, Exists: true, Session: e.Session, Flags: e.Flags,
		LockIndex: e.LockIndex, ModifyIndex: e.ModifyIndex,
		Foreign: e.Flags != consul.KeyFlags, HolderLockDelay: -1,
	}
	if !entry.Foreign {
		if v, err := consul.DecodeValue(e.Value); err == nil {
			entry.HolderID, entry.Node, entry.Since, entry.Metadata = v.CandidateID, v.Node, v.AcquiredAt, v.Metadata
			entry.FencingToken, entry.Handover, entry.From, entry.Released = consul.FencingToken(e, v), v.Handover, v.From, v.Released
		} else {
			w.logger.Warn("lock key has an unreadable value", zap.String("key", e.Key), zap.Error(err))
		}
	}
	if e.Session != "" {
		entry.HolderLockDelay = w.holderLockDelay(e.Session)
		w.lookUp(e.Session)
	}
	return entry
}

func (w *keyWatcher) holderLockDelay(session string) time.Duration {
	if d, ok := w.lockDelays[session]; ok {
		return d
	}
	if session == w.session {
		return w.opts.LockDelay
	}
	return -1
}

func (w *keyWatcher) lookUp(session string) {
	if w.asked[session] || session == w.session {
		return
	}
	w.asked[session] = true
	w.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		info, err := w.backend.SessionInfo(ctx, session)
		if err != nil {
			return &sessionLooked{id: session, gone: true}
		}
		return &sessionLooked{id: session, lockDelay: info.LockDelay}
	})
}

// rememberedSessions bounds what the watcher keeps of sessions that hold no
// key any more. Candidates that hand a key back and forth keep their
// sessions, so their lock-delays are worth keeping between terms.
const rememberedSessions = 1024

// forgetSessions drops what is known of sessions that hold no key, once
// more than rememberedSessions are known.
func (w *keyWatcher) forgetSessions() {
	if len(w.asked) <= rememberedSessions {
		return
	}
	holding := map[string]bool{}
	for _, e := range w.entries {
		holding[e.Session] = true
	}
	for id := range w.asked {
		if !holding[id] {
			delete(w.asked, id)
			delete(w.lockDelays, id)
		}
	}
}

// isLockKey reports whether key is <prefix>/<resource> with a valid resource.
func isLockKey(prefix, key string) bool {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return false
	}
	rest, ok = strings.CutPrefix(rest, "/")
	return ok && ValidateResource(rest) == nil
}

// resourceOf returns the resource of lock key key.
func resourceOf(prefix, key string) string {
	if rest, ok := strings.CutPrefix(key, prefix); ok && strings.HasPrefix(rest, "/") {
		return rest[1:]
	}
	return key
}
