package actors

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/backoff"
	"github.com/excalibur/consul-elect/internal/protocol"
	"github.com/excalibur/consul-elect/internal/registry"
	"github.com/excalibur/consul-elect/messages"
	"go.uber.org/zap"
)

// registryActor keeps this candidate's entry in the candidate registry and
// watches the registry for everyone's.
//
// The entry is written with the session (an acquire of its own key, so that
// it reads as gone once the session has ended): once per session, and again
// only when what it says changes (the resources campaigned for, coalesced
// over registryCoalesce, or the health), never per renewal. The registry
// watch is one blocking query beside the key watcher's, over few keys that
// change rarely.
type registryActor struct {
	*engine
	calls   *calls
	record  registry.Record
	key     string
	session string
	lost    bool // our session is gone, and no other is ready yet
	listing query
	// dirty says the record has changed since it was last written for the
	// session; writing says a write is in flight.
	dirty, writing bool
	flush          *time.Timer
	retry          backoff.Backoff
	index          uint64
	watchRetry     backoff.Backoff
	synced         bool // the registry has been read once
	leaving        bool // unregistered: the engine stops
	live           []messages.Candidate
	// Pruning the entries of candidates gone for a while (see prune).
	entries  []consul.Entry       // the last listing
	gone     map[string]goneEntry // key → since when it is without a session, unchanged
	deleting map[string]bool      // deletes in flight
	pruneAt  *time.Timer
}

// goneEntry is a registry entry seen without a session.
type goneEntry struct {
	index uint64 // its ModifyIndex
	since time.Time
}

type (
	registered struct {
		session string
		err     error
	}
	registryFlush struct{}
	// unregister, from the root as it stops; unregistered answers it.
	unregister     struct{}
	unregistered   struct{}
	unregisterDone struct{ replyTo *actor.PID }
	registryListed struct {
		listing uint64
		entries []consul.Entry
		index   uint64
		err     error
	}
	registryRelist struct{}
	registryPrune  struct{}
	registryPruned struct {
		key string
		err error
	}
)

// registryCoalesce gathers the campaigns that start together (a Campaign per
// resource at start-up) into one write of the entry.
const registryCoalesce = 100 * time.Millisecond

// The registry keeps an entry for every candidate id that ever campaigned
// (by default host-pid, new at every start), and every candidate reads them
// all on each change. An entry without a session, unchanged for
// registryPruneAfter, is deleted; a candidate that comes back writes its entry
// again. At most registryPruneBatch deletes are in flight; each one's change
// wakes the watch, which goes on with the next.
var registryPruneAfter = 10 * time.Minute

const (
	registryPruneBatch = 8
	registryPruneRetry = time.Minute
)

func (r *registryActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		r.calls = newCalls(c)
		r.retry = backoff.New(100*time.Millisecond, 5*time.Second)
		r.watchRetry = backoff.New(100*time.Millisecond, 5*time.Second)
		r.key = registry.Key(r.prefix, r.opts.CandidateID)
		r.gone, r.deleting = map[string]goneEntry{}, map[string]bool{}
		r.record = registry.Record{ID: r.opts.CandidateID, Priority: r.opts.Priority, Healthy: true,
			Version: registry.Version(), Started: time.Now().UTC()}
		c.Request(c.Parent(), &protocol.ChildStarted{})
		r.list()
	case *protocol.SessionReady:
		// A new session's entry is written at once, not after the campaigns
		// still being gathered: until the first one lands the registry's
		// prefix is empty, and a blocking query on an empty prefix answers
		// on every write to Consul's KV store.
		r.session, r.record.Node = m.ID, m.Node
		r.dirty = true
		r.calls.cancelTimer(r.flush)
		r.flush = nil
		r.write()
		if r.lost && r.listing.inFlight() {
			r.list() // see keyWatcher's
		}
		r.lost = false
	case *protocol.SessionGone:
		if m.ID == r.session {
			r.session, r.lost = "", true
		}
	case *protocol.Campaigning:
		if !slices.Equal(r.record.Resources, m.Resources) {
			r.record.Resources = m.Resources
			r.changed(registryCoalesce)
		}
	case *messages.SetHealth:
		if r.record.Healthy != m.Healthy || r.record.Reason != m.Reason {
			r.record.Healthy, r.record.Reason = m.Healthy, m.Reason
			r.changed(0)
		}
	case *registryFlush:
		r.flush = nil
		r.write()
	case *registered:
		r.writing = false
		if m.err != nil {
			r.consulError("register candidate", m.err)
			if errors.Is(m.err, consul.ErrLockHeld) {
				r.publish(messages.ElectionError{Op: "register candidate", Err: m.err, At: time.Now()})
				r.logger.Error("another candidate with this candidate id is registered; candidate ids must be unique",
					zap.String("key", r.key))
			}
			r.dirty = true
			r.flush = r.calls.after(r.retry.Next(), &registryFlush{})
			return
		}
		r.retry.Reset()
		if m.session != r.session {
			r.dirty = true // written with a session that is gone meanwhile
		}
		r.write() // what changed meanwhile
	case *registryRelist:
		r.list()
	case *registryListed:
		if r.listing.answered(m.listing) {
			r.listed(c, m)
		}
	case *registryPrune:
		r.pruneAt = nil
		r.prune()
	case *registryPruned:
		delete(r.deleting, m.key)
		if m.err != nil {
			r.consulError("delete a gone candidate's entry", m.err)
			r.logger.Debug("deleting a gone candidate's registry entry failed", zap.String("key", m.key), zap.Error(m.err))
			r.schedulePrune(registryPruneRetry)
		}
	case *unregister:
		r.unregister(c)
	case *unregisterDone:
		c.Send(m.replyTo, &unregistered{})
	case *actor.Stopping, *actor.Restarting:
		r.calls.stop()
	}
}

// unregister takes this candidate out of the registry for good, as the
// engine stops: its entry is released (it reads as gone) and never written
// again. Transfers to this candidate check that entry, so none lands after.
func (r *registryActor) unregister(c actor.Context) {
	replyTo, session, value := c.Sender(), r.session, registry.Encode(r.record)
	r.leaving = true
	r.calls.cancelTimer(r.flush)
	r.flush = nil
	r.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		if err := r.backend.Release(ctx, r.key, session, value); err != nil {
			r.logger.Warn("could not leave the candidate registry", zap.Error(err))
		}
		return &unregisterDone{replyTo: replyTo}
	})
}

// changed notes that the record changed, and writes it after coalesce.
func (r *registryActor) changed(coalesce time.Duration) {
	r.dirty = true
	if r.flush == nil && !r.writing {
		r.flush = r.calls.after(coalesce, &registryFlush{})
	}
}

// write writes the record with the current session, if it changed.
func (r *registryActor) write() {
	if !r.dirty || r.writing || r.session == "" || r.leaving {
		return
	}
	r.dirty, r.writing = false, true
	session, value := r.session, registry.Encode(r.record)
	r.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		_, err := r.backend.Acquire(ctx, r.key, session, value)
		return &registered{session: session, err: err}
	})
}

// list starts the next blocking query, in place of the one in flight if
// there is one.
func (r *registryActor) list() {
	index := r.index
	ctx, listing := r.listing.start(r.calls, blockingTimeout(watchWait))
	r.calls.run(func(context.Context) any {
		entries, next, err := r.backend.ListPrefix(ctx, registry.Prefix(r.prefix), index, watchWait)
		return &registryListed{listing: listing, entries: entries, index: next, err: err}
	})
}

func (r *registryActor) listed(c actor.Context, m *registryListed) {
	if m.err != nil {
		r.index = 0
		r.consulError("watch candidates", m.err)
		wait := r.watchRetry.Next()
		r.logger.Warn("watching the candidate registry failed; retrying", zap.Error(m.err), zap.Duration("in", wait))
		r.calls.after(wait, &registryRelist{})
		return
	}
	r.watchRetry.Reset()
	r.index, r.entries = m.index, m.entries
	live := registry.Live(m.entries, "")
	if !r.synced || !slices.EqualFunc(live, r.live, sameCandidate) {
		r.synced, r.live = true, live
		c.Send(c.Parent(), &protocol.CandidatesChanged{Candidates: live})
	}
	r.prune()
	r.list()
}

// prune deletes the entries of the last listing that have been without a
// session, unchanged, for registryPruneAfter. Only one candidate does it, the
// live one first by id, so that the others do not send the same deletes; a
// delete is check-and-set, so an entry written meanwhile (its candidate came
// back) stays.
func (r *registryActor) prune() {
	pruner, ok := r.backend.(Pruner)
	if !ok || !r.pruner() {
		clear(r.gone)
		return
	}
	now := time.Now()
	var next time.Duration // until the next entry is due; 0: none
	seen := map[string]bool{}
	for _, e := range r.entries {
		if e.Session != "" || e.Key == r.key {
			continue
		}
		seen[e.Key] = true
		g, ok := r.gone[e.Key]
		if !ok || g.index != e.ModifyIndex {
			g = goneEntry{index: e.ModifyIndex, since: now}
			r.gone[e.Key] = g
		}
		left := registryPruneAfter - now.Sub(g.since)
		switch {
		case r.deleting[e.Key]:
		case left > 0:
			if next == 0 || left < next {
				next = left
			}
		case len(r.deleting) < registryPruneBatch:
			r.deleting[e.Key] = true
			key, index := e.Key, e.ModifyIndex
			r.calls.run(func(ctx context.Context) any {
				ctx, cancel := context.WithTimeout(ctx, requestTimeout)
				defer cancel()
				_, err := pruner.DeleteIfUnchanged(ctx, key, index)
				return &registryPruned{key: key, err: err}
			})
		}
	}
	for key := range r.gone {
		if !seen[key] {
			delete(r.gone, key)
		}
	}
	if next > 0 {
		r.schedulePrune(next)
	}
}

// pruner reports whether this candidate is the one that prunes: the live
// candidate first by id.
func (r *registryActor) pruner() bool {
	if len(r.live) == 0 {
		return false
	}
	first := slices.MinFunc(r.live, func(a, b messages.Candidate) int { return strings.Compare(a.ID, b.ID) })
	return first.ID == r.opts.CandidateID
}

func (r *registryActor) schedulePrune(after time.Duration) {
	if r.pruneAt == nil {
		r.pruneAt = r.calls.after(after, &registryPrune{})
	}
}

func sameCandidate(a, b messages.Candidate) bool {
	return a.ID == b.ID && a.Node == b.Node && a.Priority == b.Priority && a.Healthy == b.Healthy &&
		a.Reason == b.Reason && a.Started.Equal(b.Started) && slices.Equal(a.Resources, b.Resources)
}
