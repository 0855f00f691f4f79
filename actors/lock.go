package actors

import (
	"cmp"
	"context"
	"errors"
	"hash/fnv"
	"maps"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/backoff"
	"github.com/excalibur/consul-elect/internal/protocol"
	"github.com/excalibur/consul-elect/internal/registry"
	"github.com/excalibur/consul-elect/messages"
	"go.uber.org/zap"
)

// lockState is where a lock actor is in a term of its resource.
type lockState int

const (
	// follower: not leading. It acquires when a session is ready, the key is
	// known to be free (or held by our own session) and nothing holds it
	// back: a hold-off, a lock-delay retry, a worker still stopping.
	follower lockState = iota
	// acquiring: an acquire is in flight.
	acquiring
	// leading: this candidate holds the key; the worker, if any, runs.
	leading
	// draining: the term ended voluntarily (Resign, Withdraw, Stop) and
	// LeadershipLost is out; the key is released once the worker has
	// terminated, or after DrainTimeout.
	draining
	// releasing: a release is in flight. No acquire starts meanwhile: with
	// one session for every term, a late release would unlock the next
	// term's key.
	releasing
)

// noSession is a lock's session while there is none. Like the SessionReady
// messages a lock keeps, it is never changed.
var noSession = &protocol.SessionReady{}

var lockStateNames = [...]string{"follower", "acquiring", "leading", "draining", "releasing"}

func (s lockState) String() string { return lockStateNames[s] }

// lockActor campaigns for one resource. It learns of its key from the key
// watcher (through the root) and never polls.
//
// Leadership is lost locally first: the actor publishes LeadershipLost, then
// stops the worker, then talks to Consul.
type lockActor struct {
	*engine
	resource string
	key      string
	metadata map[string]string
	// workerProps is the user's work while leading (Campaign.Worker).
	workerProps *actor.Props

	calls   *calls
	parent  *actor.PID
	state   lockState
	session *protocol.SessionReady // never nil: noSession while there is none
	entry   protocol.KeyEntry
	known   bool   // entry has been received
	gen     uint64 // tags acquire results
	// sawIndex is the key's ModifyIndex as the watcher last showed it when
	// the acquire in flight was sent.
	sawIndex uint64
	// abandon cancels the acquire in flight; abandoned: it was cancelled
	// because the watcher has since shown the key held by another session.
	// One still waiting in the client's batch is then not sent.
	abandon   context.CancelFunc
	abandoned bool

	// The current term, while leading or draining.
	token    uint64                       // fencing token
	value    []byte                       // written to the key; released with it
	acquired *messages.LeadershipAcquired // the term's; nil before the first
	worker   *actor.PID                   // alive from the term's start until it has terminated
	drainEnd *time.Timer

	holdOffUntil time.Time
	retryAt      *time.Timer
	delayRetry   backoff.Backoff
	freedAt      time.Time // when the key was seen freed by another session
	lastLeader   messages.LeaderChanged
	conflict     bool             // a conflict was reported for the current entry
	withdrawing  *messages.Reason // the campaign is over; Released follows the release
	waiters      []*actor.PID     // Withdraw requests, answered once released

	healthy     bool                 // as the application said (SetHealth)
	candidates  []messages.Candidate // live ones for this resource, highest priority first
	heldBack    bool                 // the key, free as last seen, was left to another once
	holdBackAt  *time.Timer          // ends a hold-back; stopped when the key changes
	preemptAt   *time.Timer
	handingOver string // the term ends in a switchover to this candidate: after the release, hold off too
	// handed: the key was handed to our session by its last holder
	// (Transfer): its term starts with that write, without an acquire.
	handed bool
}

type (
	acquireDone struct {
		gen   uint64
		entry consul.Entry
		err   error
	}
	retryAcquire struct{}
	holdBackDone struct{}
	preemptCheck struct{ token uint64 }
	releaseDone  struct{}
	// transferFailed: the successor did not take the key; release it.
	transferFailed struct{ err error }
	drainExpired   struct{ token uint64 }
	proclaimDone   struct {
		token    uint64
		metadata map[string]string
		value    []byte
		replyTo  *actor.PID
		err      error
	}
)

// How long a candidate leaves a free key to another.
const (
	// releasedHoldOff: a leader whose key was released by someone else
	// waits this long (LockDelay if longer) before campaigning again.
	releasedHoldOff = time.Second
	// priorityHoldBack: a waiting candidate leaves a freed key this long to
	// a live, healthy one of higher priority that waits for it too.
	priorityHoldBack = time.Second
	// handoverHoldBack: the candidates other than a switchover's target
	// leave the freed key to it this long.
	handoverHoldBack = 2 * time.Second
)

// lockFailure is the panic that makes the supervisor restart a lock actor
// after a Consul error it cannot resolve by waiting for the key.
type lockFailure struct{ err error }

func (f lockFailure) String() string { return "lock: " + f.err.Error() }

func (l *lockActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		l.calls, l.parent, l.healthy = newCalls(c), c.Parent(), true
		l.delayRetry = backoff.New(50*time.Millisecond, time.Second)
		c.Request(c.Parent(), &protocol.ChildStarted{Resource: l.resource})
	case *messages.Campaign:
		if l.workerProps == nil && m.Worker != nil {
			l.workerProps = m.Worker
			if l.state == leading {
				l.startWorker(c)
			}
		}
	case *protocol.SessionReady:
		l.session = m
		l.consider(c)
	case *protocol.SessionGone:
		if m.ID == l.session.ID {
			l.lose(c, m.Reason, m.Err) // while l.session still names the session that led
			l.session = noSession
			if l.state == acquiring {
				l.gen++
				l.state = follower
			}
		}
	case *protocol.KeyState:
		if l.state == leading && m.Entry.Observed < l.token && !m.Entry.Restored {
			return // read before our acquisition: it says nothing about it
		}
		l.observe(c, m.Entry)
		if m.Entry.Restored {
			l.restored()
		}
		l.consider(c)
	case *acquireDone:
		// A result of an older generation is dropped. If it acquired the key
		// after we stopped wanting it (resigned, session changed), the next
		// KeyState shows our session holding it and consider() releases or
		// adopts it.
		if m.gen == l.gen {
			l.acquireDone(c, m)
		}
	case *retryAcquire:
		l.retryAt = nil
		l.consider(c)
	case *holdBackDone:
		l.holdBackAt = nil
		l.consider(c)
	case *messages.Resign:
		l.holdOffUntil = time.Now().Add(m.HoldOff)
		if l.state == acquiring {
			// The acquire in flight must not make us lead; if it lands, the
			// key watcher shows our session holding the key and consider()
			// releases it.
			l.gen++
			l.state = follower
		}
		l.end(c, messages.ReasonResigned)
		// This hold-off replaces any earlier one, shorter or longer.
		l.calls.cancelTimer(l.retryAt)
		l.retryAt = nil
		if m.HoldOff > 0 {
			l.retryAt = l.calls.after(m.HoldOff, &retryAcquire{})
		}
		l.consider(c)
	case *messages.SetHealth:
		l.healthy = m.Healthy
		if !l.healthy && l.state == acquiring {
			l.gen++ // if it lands, consider() releases it
			l.state = follower
		}
		if !l.healthy {
			l.end(c, messages.ReasonUnhealthy)
		}
		l.consider(c)
	case *protocol.CandidatesChanged:
		l.candidates = m.Candidates // those campaigning for this resource
		l.preempt(c)
		l.consider(c)
	case *protocol.HandOver:
		if l.state == leading {
			l.logger.Info("handing over for fair shares", zap.String("resource", l.resource), zap.String("to", m.To))
			l.handOver(c, m.To)
		}
	case *preemptCheck:
		if m.token == l.token {
			l.preemptAt = nil
			l.preempt(c)
		}
	case *messages.Proclaim:
		l.proclaim(c, c.Sender(), m)
	case *proclaimDone:
		l.proclaimDone(c, m)
	case *messages.GetState:
		c.Respond(l.stateReport())
	case *messages.Withdraw:
		if c.Sender() != nil {
			l.waiters = append(l.waiters, c.Sender())
		}
		if l.withdrawing != nil && l.state == follower {
			l.answerWaiters(c) // done already (a Stop came first): answer at once
			return
		}
		l.withdraw(c, messages.ReasonResigned)
	case *messages.Stop:
		l.withdraw(c, messages.ReasonStopped)
	case *actor.Terminated:
		if l.worker != nil && m.Who.Equal(l.worker) {
			l.worker = nil
			if l.state == draining {
				l.release(c)
			}
			l.consider(c)
		}
	case *childRestarted:
		if l.state == leading && l.worker != nil && m.child.Equal(l.worker) {
			c.Send(l.worker, *l.acquired) // the new instance starts this term's work again
		}
	case *drainExpired:
		if l.state == draining && m.token == l.acquired.FencingToken {
			l.logger.Warn("the worker did not stop within DrainTimeout; releasing the key anyway",
				zap.String("resource", l.resource), zap.Duration("drain_timeout", l.opts.DrainTimeout))
			l.release(c)
		}
	case *transferFailed:
		if l.state == releasing {
			if !errors.Is(m.err, consul.ErrTransferRefused) {
				l.consulError("transfer", m.err)
			}
			l.unlock(c)
		}
	case *releaseDone:
		l.state = follower
		if l.withdrawing != nil {
			l.withdrawn(c)
			return
		}
		if l.handingOver != "" {
			// Like the others, leave the key to the target.
			l.handingOver = ""
			l.holdOffUntil = time.Now().Add(handoverHoldBack)
			l.calls.cancelTimer(l.retryAt)
			l.retryAt = l.calls.after(handoverHoldBack, &retryAcquire{})
		}
		l.consider(c)
	case *actor.Stopping:
		l.calls.stop()
		l.lose(c, messages.ReasonStopped, nil)
		l.answerWaiters(c) // nobody waits for an answer from a stopped actor
	case *actor.Restarting:
		l.calls.stop()
		l.lose(c, messages.ReasonError, nil)
	}
}

// observe takes in the latest entry of the key: a leader checks it still
// holds it; everyone reports a change of leader.
func (l *lockActor) observe(c actor.Context, e protocol.KeyEntry) {
	prev, known := l.entry, l.known
	l.entry, l.known = e, true
	// Handed over: the key went from another session to ours in one write
	// that names us. An actor that has not seen it held by another (one just
	// started) cannot tell a handover from a term of its own, and acquires.
	switch {
	case l.session.ID == "" || e.Session != l.session.ID || e.Restored:
		l.handed = false
	case known && prev.Session != l.session.ID:
		l.handed = e.From != "" && e.HolderID == l.opts.CandidateID && (l.state == follower || l.state == acquiring)
	}
	if prev.Session != "" && e.Session == "" && prev.Session != l.session.ID {
		l.freedAt = time.Now()
	}
	if e.Session != prev.Session || e.ModifyIndex != prev.ModifyIndex {
		l.heldBack = false
		l.calls.cancelTimer(l.holdBackAt)
		l.holdBackAt = nil
	}
	switch {
	case l.state == acquiring && e.Session != "" && e.Session != l.session.ID && l.abandon != nil:
		// Candidates that start together queue thousands of acquires each;
		// those the others have taken meanwhile would only fail the
		// transactions they are batched in.
		l.abandon()
		l.abandoned = true
	case l.state == leading && e.Exists && e.Session == l.session.ID && e.Handover != nil && e.Handover.To != l.opts.CandidateID:
		l.handOver(c, e.Handover.To) // a switchover, asked by an operator or another candidate
	case l.state == leading && !e.Exists:
		l.lose(c, messages.ReasonKeyDeleted, nil)
	case l.state == leading && e.Foreign:
		l.lose(c, messages.ReasonKeyChanged, nil)
	case l.state == leading && e.Session != l.session.ID:
		l.lose(c, messages.ReasonKeyTaken, nil)
		if e.Session == "" {
			// Released by someone else (an operator moving leadership):
			// let another candidate have it.
			l.holdOffUntil = time.Now().Add(max(l.opts.LockDelay, releasedHoldOff))
			l.retryAt = l.calls.after(time.Until(l.holdOffUntil), &retryAcquire{})
		}
	case l.state == draining && e.Session != l.session.ID:
		// Not ours any more: nothing left to release.
		l.calls.cancelTimer(l.drainEnd)
		l.state = follower
	}
	if !e.Foreign {
		l.conflict = false
	}
	l.reportLeader(messages.LeaderChanged{Resource: l.resource, CandidateID: l.opts.CandidateID, LeaderID: e.HolderID, Node: e.Node,
		Session: e.Session, FencingToken: e.FencingToken, Since: e.Since, Metadata: e.Metadata})
}

// restored follows a replacement of Consul's state (a snapshot restore),
// which ends the term of a leader whose session no longer holds the key
// without the lock-delay that would have kept the others out while it stops
// its work. The leader learns of it from the same listing as the others; a
// follower leaves the key alone for LockDelay, as Consul would have (or
// until its hold-off ends, if that is later).
func (l *lockActor) restored() {
	if l.state == leading || l.opts.LockDelay == 0 {
		return
	}
	l.calls.cancelTimer(l.retryAt)
	l.retryAt = l.calls.after(max(l.opts.LockDelay, time.Until(l.holdOffUntil)), &retryAcquire{})
}

// reportLeader publishes LeaderChanged when the holder, or its metadata,
// differs from the last one reported.
func (l *lockActor) reportLeader(now messages.LeaderChanged) {
	if now.Session == "" {
		now = messages.LeaderChanged{Resource: l.resource, CandidateID: l.opts.CandidateID}
	}
	if now.Session == l.lastLeader.Session && now.LeaderID == l.lastLeader.LeaderID && maps.Equal(now.Metadata, l.lastLeader.Metadata) {
		return
	}
	l.lastLeader = now
	l.publish(now)
}

// consider acquires the key when it can: a follower with a session, the key's
// state known and free (or held by our own session), and nothing holding it
// back.
func (l *lockActor) consider(c actor.Context) {
	if l.handed && l.state == follower && l.entry.Session == l.session.ID {
		switch {
		case l.withdrawing != nil, time.Now().Before(l.holdOffUntil), !l.healthy:
			// Not wanted now: free it for the others. Handing it on could
			// bounce it between candidates that all hold off.
			l.handed = false
			l.value = consul.EncodeValue(consul.Value{CandidateID: l.entry.HolderID, Node: l.entry.Node,
				AcquiredAt: l.entry.Since, From: l.entry.From}) // as handed, released below
			l.releasing(c)
			l.unlock(c)
			return
		case l.worker == nil:
			l.handed = false
			l.takeHanded(c)
			return
		}
	}
	switch {
	case l.withdrawing != nil, l.state != follower, l.worker != nil, l.session.ID == "", !l.known, l.retryAt != nil, l.holdBackAt != nil:
		return
	case l.entry.Foreign:
		if !l.conflict {
			l.conflict = true
			err := &consul.Error{Op: "acquire " + l.key, Kind: consul.ErrConflict,
				Err: errors.New("the key exists with flags that are not consul-elect's; remove it or choose another KeyPrefix")}
			l.logger.Error("lock key is used by something else; not taking it over", zap.String("key", l.key))
			l.publish(messages.ElectionError{Resource: l.resource, Op: "acquire", Err: err, At: time.Now()})
		}
		return
	case time.Now().Before(l.holdOffUntil), !l.healthy:
		if l.entry.Session == l.session.ID {
			l.release(c) // acquired in flight before the resign
		}
		return
	case l.entry.Session != "" && l.entry.Session != l.session.ID:
		return // someone leads; the key watcher tells us when that changes
	}
	if wait := l.holdBack(); wait > 0 {
		l.holdBackAt = l.calls.after(wait, &holdBackDone{})
		return
	}
	if wait := l.lockDelayOwed(); wait > 0 {
		l.retryAt = l.calls.after(wait, &retryAcquire{})
		return
	}
	l.acquire()
}

// lockDelayOwed is how long the last holder's lock-delay still runs, for a
// key seen freed by the end of the holder's session rather than released
// (see consul.Value.Released). Consul refuses the key for that long too, but
// keeps lock-delays in memory only, apart from its state: a snapshot restore
// drops them, and in Consul 1.14 the timer of an earlier lock-delay on the
// same key ends a later one early (state.Delay.SetExpiration). Waiting here
// gives a leader cut off from Consul its whole fence window either way.
func (l *lockActor) lockDelayOwed() time.Duration {
	if !l.entry.Exists || l.entry.Session != "" || l.entry.Released || l.freedAt.IsZero() {
		return 0
	}
	d := l.entry.HolderLockDelay
	if d < 0 {
		d = l.opts.LockDelay // the session ended before the watcher could read it
	}
	return time.Until(l.freedAt.Add(d))
}

// holdBack is how long to leave the free key to another candidate, once
// each time it is seen free: to a switchover's target, or to a live, healthy
// candidate of higher priority (other than the one that just let it go).
func (l *lockActor) holdBack() time.Duration {
	if l.entry.Session != "" || l.heldBack {
		return 0
	}
	l.heldBack = true
	if h := l.entry.Handover; h != nil {
		if h.To == l.opts.CandidateID {
			return 0
		}
		return handoverHoldBack
	}
	for _, c := range l.candidates {
		if c.Priority > l.opts.Priority && c.Healthy && c.ID != l.opts.CandidateID && c.ID != l.entry.HolderID {
			// Past the last holder's lock-delay too: a key freed by an
			// invalidated session can be taken only then, and the higher
			// priority tries the moment it ends.
			return priorityHoldBack + max(l.entry.HolderLockDelay, 0)
		}
	}
	if share := l.share.Load(); share.Full && slices.ContainsFunc(share.Below, func(id string) bool { return id != l.entry.HolderID }) {
		return balanceHoldBack // leave it to a peer below its share
	}
	return 0
}

// preempt hands the term over to the live, healthy candidate of highest
// priority above this one's, with Options.Preempt, once the term has lasted
// PreemptAfter.
func (l *lockActor) preempt(c actor.Context) {
	if !l.opts.Preempt || l.state != leading {
		return
	}
	i := slices.IndexFunc(l.candidates, func(c messages.Candidate) bool {
		return c.Priority > l.opts.Priority && c.Healthy && c.ID != l.opts.CandidateID
	})
	if i < 0 {
		return
	}
	if wait := time.Until(l.acquired.At.Add(PreemptAfter)); wait > 0 {
		if l.preemptAt == nil {
			l.preemptAt = l.calls.after(wait, &preemptCheck{token: l.token})
		}
		return
	}
	l.logger.Info("handing over to a candidate of higher priority", zap.String("resource", l.resource),
		zap.String("to", l.candidates[i].ID), zap.Int("priority", l.candidates[i].Priority))
	l.handOver(c, l.candidates[i].ID)
}

// handOver ends the term for a switchover to candidate to: the release keeps
// the request in the key's value, so that the others leave the key to it.
func (l *lockActor) handOver(c actor.Context, to string) {
	v, _ := consul.DecodeValue(l.value)
	v.Token, v.Handover = l.token, &consul.Handover{To: to, At: time.Now().UTC()}
	l.value = consul.EncodeValue(v)
	l.handingOver = to
	l.end(c, messages.ReasonSwitchover)
}

// takeHanded starts the term of a key handed to our session: the handing
// write is its acquisition, and its ModifyIndex the fencing token. The value
// is then written as ours if the campaign has metadata.
func (l *lockActor) takeHanded(c actor.Context) {
	l.calls.cancelTimer(l.holdBackAt)
	l.holdBackAt = nil
	l.value = consul.EncodeValue(consul.Value{CandidateID: l.opts.CandidateID, Node: l.session.Node,
		AcquiredAt: l.entry.Since, Metadata: l.metadata})
	l.lead(c, consul.Entry{Key: l.key, Session: l.session.ID, LockIndex: l.entry.LockIndex, ModifyIndex: l.entry.ModifyIndex})
	if len(l.metadata) > 0 {
		l.proclaim(c, nil, &messages.Proclaim{Resource: l.resource, Metadata: l.metadata})
	}
}

func (l *lockActor) acquire() {
	l.state = acquiring
	l.gen++
	l.sawIndex = l.entry.ModifyIndex
	l.abandoned = false
	gen, session := l.gen, l.session
	l.value = consul.EncodeValue(consul.Value{CandidateID: l.opts.CandidateID, Node: session.Node,
		AcquiredAt: time.Now().UTC(), Metadata: l.metadata})
	value := l.value
	if async, ok := l.backend.(AsyncAcquirer); ok {
		ctx, cancel := context.WithTimeout(l.requests, requestTimeout)
		l.abandon = cancel
		async.AcquireAsync(ctx, l.key, session.ID, value, func(entry consul.Entry, err error) {
			cancel()
			l.calls.deliver(&acquireDone{gen: gen, entry: entry, err: err})
		})
		return
	}
	l.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		entry, err := l.backend.Acquire(ctx, l.key, session.ID, value)
		return &acquireDone{gen: gen, entry: entry, err: err}
	})
}

func (l *lockActor) acquireDone(c actor.Context, m *acquireDone) {
	l.state, l.abandon = follower, nil
	abandoned := l.abandoned && errors.Is(m.err, context.Canceled)
	if m.err != nil && !abandoned {
		l.consulError("acquire", m.err)
	}
	switch {
	case m.err == nil:
		l.lead(c, m.entry)
	case errors.Is(m.err, consul.ErrLockHeld), abandoned:
		// Someone was faster; the key watcher shows who. If it has shown a
		// change while this acquire was on its way (the key freed again, or
		// handed to us), nothing else will wake the lock: look again. A
		// change is needed each time, so this never spins.
		if l.entry.ModifyIndex != l.sawIndex {
			l.consider(c)
		}
	case errors.Is(m.err, consul.ErrLockDelay):
		l.heldBack = false // when the delay ends, the higher priority goes first again
		l.retryAt = l.calls.after(l.lockDelayLeft(), &retryAcquire{})
	case errors.Is(m.err, consul.ErrSessionGone):
		c.Send(c.Parent(), &protocol.SessionGone{ID: l.session.ID, Reason: messages.ReasonSessionInvalidated, Err: m.err})
	default:
		l.publish(messages.ElectionError{Resource: l.resource, Op: "acquire", Err: m.err, At: time.Now()})
		panic(lockFailure{m.err})
	}
}

// lead starts a term: say so, then start the worker.
func (l *lockActor) lead(c actor.Context, entry consul.Entry) {
	l.state, l.token = leading, entry.ModifyIndex
	l.delayRetry.Reset()
	l.acquired = &messages.LeadershipAcquired{Resource: l.resource, Key: l.key, CandidateID: l.opts.CandidateID,
		Session: l.session.ID, FencingToken: l.token, LockIndex: entry.LockIndex, At: time.Now()}
	// The term's work starts first; saying so (the log, the other actors)
	// follows.
	l.publish(*l.acquired)
	l.startWorker(c)
	l.logger.Info("leadership acquired", zap.String("resource", l.resource),
		zap.String("session", l.session.ID), zap.Uint64("fencing_token", l.token))
	c.Send(c.Parent(), &protocol.Holding{Key: l.key, Session: l.session.ID, Token: l.token})
	v, _ := consul.DecodeValue(l.value)
	l.reportLeader(messages.LeaderChanged{Resource: l.resource, CandidateID: l.opts.CandidateID, LeaderID: l.opts.CandidateID,
		Node: l.session.Node, Session: l.session.ID, FencingToken: l.token, Since: v.AcquiredAt, Metadata: v.Metadata})
	c.Send(c.Parent(), &protocol.Leading{Resource: l.resource, Leading: true})
	l.preempt(c)
}

// startWorker spawns the user's worker for this term; it hears the term's
// LeadershipAcquired right after Started.
func (l *lockActor) startWorker(c actor.Context) {
	if l.workerProps == nil {
		return
	}
	l.worker = c.SpawnPrefix(l.workerProps, "worker-")
	c.Send(l.worker, *l.acquired)
}

// lockDelayLeft is when to try again after Consul refused for lock-delay.
// Consul does not say how long is left; the delay is the last holder's and
// started when its session was invalidated, just before we saw the key freed.
func (l *lockActor) lockDelayLeft() time.Duration {
	if left := l.lockDelayOwed(); left > 0 {
		return left
	}
	return l.delayRetry.Next()
}

// stepDown ends a term: it publishes LeadershipLost at once and tells the
// worker to stop. It reports whether there was a term to end.
func (l *lockActor) stepDown(c actor.Context, reason messages.Reason, err error) bool {
	if l.state != leading {
		return false
	}
	l.publish(messages.LeadershipLost{Resource: l.resource, CandidateID: l.opts.CandidateID, Session: l.session.ID,
		FencingToken: l.token, Reason: reason, Err: err, At: time.Now(),
		StopBy: l.refreshes.stopBy(l.session.ID, l.timing)})
	if l.worker != nil {
		c.Stop(l.worker)
	}
	l.logger.Info("leadership lost", zap.String("resource", l.resource), zap.String("reason", string(reason)), zap.Error(err))
	l.token = 0
	l.calls.cancelTimer(l.preemptAt)
	l.preemptAt = nil
	c.Send(l.parent, &protocol.Leading{Resource: l.resource, Leading: false})
	return true
}

// lose ends the term involuntarily: the key may already be someone else's,
// so nothing waits for the worker. A draining term has nothing left to
// release either.
func (l *lockActor) lose(c actor.Context, reason messages.Reason, err error) {
	switch {
	case l.stepDown(c, reason, err):
		l.state = follower
	case l.state == draining:
		l.calls.cancelTimer(l.drainEnd)
		l.state = follower
	}
}

// end ends the term voluntarily: drain, then release (or hand over), so
// that a standby starts only after this leader's work has stopped.
func (l *lockActor) end(c actor.Context, reason messages.Reason) {
	if !l.stepDown(c, reason, nil) {
		return
	}
	l.state = draining
	if l.worker == nil || l.opts.DrainTimeout == 0 {
		l.release(c)
		return
	}
	l.drainEnd = l.calls.after(l.opts.DrainTimeout, &drainExpired{token: l.acquired.FencingToken})
}

// release gives up the key, then reports releaseDone: it hands the key to a
// successor in one write when there is one (see successor), and unlocks it
// otherwise, or when the successor does not take it.
func (l *lockActor) release(c actor.Context) {
	l.releasing(c)
	if to, ok := l.successor(); ok {
		l.transfer(to)
		return
	}
	l.unlock(c)
}

func (l *lockActor) releasing(c actor.Context) {
	l.calls.cancelTimer(l.drainEnd)
	l.state = releasing
	c.Send(l.parent, &protocol.Releasing{Key: l.key})
}

// transfer hands the key to candidate to; transferFailed follows when it
// does not take it.
func (l *lockActor) transfer(to messages.Candidate) {
	session := l.session.ID
	successor := consul.Successor{Session: to.Session, Guard: registry.Key(l.prefix, to.ID)}
	value := consul.EncodeValue(consul.Value{CandidateID: to.ID, Node: to.Node, AcquiredAt: time.Now().UTC(), From: l.opts.CandidateID})
	done := func(_ consul.Entry, err error) any {
		if err == nil || errors.Is(err, consul.ErrLockLost) {
			return &releaseDone{}
		}
		return &transferFailed{err: err}
	}
	if async, ok := l.backend.(AsyncTransferrer); ok {
		ctx, cancel := context.WithTimeout(l.requests, destroyTimeout)
		async.TransferAsync(ctx, l.key, session, successor, value, func(entry consul.Entry, err error) {
			cancel()
			l.calls.deliver(done(entry, err))
		})
		return
	}
	l.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, destroyTimeout)
		defer cancel()
		return done(l.backend.(Transferrer).Transfer(ctx, l.key, session, successor, value))
	})
}

// successor is whom a release hands the key to, so that the next term
// starts with the release's own write rather than with a race to acquire it
// after: a switchover's target; otherwise, among the live, healthy candidates
// of highest priority other than this one (with Balance, preferring those
// below their share), the one that rendezvous hashing picks for the resource,
// so that a stopping candidate's keys spread over the others. There is none
// with ReleaseOnly, without a Transferrer, or when no candidate qualifies.
func (l *lockActor) successor() (messages.Candidate, bool) {
	if _, ok := l.backend.(Transferrer); !ok || l.opts.ReleaseOnly || l.session.ID == "" {
		return messages.Candidate{}, false
	}
	eligible := slices.DeleteFunc(slices.Clone(l.candidates), func(c messages.Candidate) bool {
		return !c.Healthy || c.ID == l.opts.CandidateID || c.Session == "" || c.Session == l.session.ID
	})
	if l.handingOver != "" {
		i := slices.IndexFunc(eligible, func(c messages.Candidate) bool { return c.ID == l.handingOver })
		if i < 0 {
			return messages.Candidate{}, false
		}
		return eligible[i], true
	}
	if len(eligible) == 0 {
		return messages.Candidate{}, false
	}
	top := eligible[0].Priority // highest first
	eligible = slices.DeleteFunc(eligible, func(c messages.Candidate) bool { return c.Priority != top })
	if share := l.share.Load(); len(share.Below) > 0 {
		below := slices.DeleteFunc(slices.Clone(eligible), func(c messages.Candidate) bool { return !slices.Contains(share.Below, c.ID) })
		if len(below) > 0 {
			eligible = below
		}
	}
	return slices.MaxFunc(eligible, func(a, b messages.Candidate) int {
		return cmp.Compare(rendezvous(l.resource, a.ID), rendezvous(l.resource, b.ID))
	}), true
}

// rendezvous is candidate's weight for resource in rendezvous hashing.
func rendezvous(resource, candidate string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(resource))
	h.Write([]byte{0})
	h.Write([]byte(candidate))
	return h.Sum64()
}

// unlock releases the key for the session in a goroutine, then reports
// releaseDone.
func (l *lockActor) unlock(c actor.Context) {
	session, value := l.session.ID, consul.ReleasedValue(l.value)
	failed := func(err error) {
		if err != nil {
			l.logger.Warn("could not release the key; it is released when the session ends",
				zap.String("key", l.key), zap.Error(err))
		}
	}
	if async, ok := l.backend.(AsyncReleaser); ok {
		ctx, cancel := context.WithTimeout(l.requests, destroyTimeout)
		async.ReleaseAsync(ctx, l.key, session, value, func(err error) {
			cancel()
			failed(err)
			l.calls.deliver(&releaseDone{})
		})
		return
	}
	l.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, destroyTimeout)
		defer cancel()
		failed(l.backend.Release(ctx, l.key, session, value))
		return &releaseDone{}
	})
}

// withdraw ends the campaign: a leader drains and releases; then the root
// hears Released.
func (l *lockActor) withdraw(c actor.Context, reason messages.Reason) {
	if l.withdrawing != nil {
		return
	}
	l.withdrawing = &reason
	l.gen++
	switch l.state {
	case leading:
		l.end(c, reason)
	case draining, releasing:
		// releaseDone finishes the withdrawal.
	default:
		if l.state == acquiring || (l.session.ID != "" && l.entry.Session == l.session.ID) {
			l.release(c) // the acquire in flight may land
			return
		}
		l.withdrawn(c)
	}
}

// withdrawn tells the root, and whoever asked, that the key is released.
func (l *lockActor) withdrawn(c actor.Context) {
	c.Send(l.parent, &protocol.Released{Resource: l.resource})
	l.answerWaiters(c)
}

func (l *lockActor) answerWaiters(c actor.Context) {
	for _, waiter := range l.waiters {
		c.Send(waiter, l.stateReport())
	}
	l.waiters = nil
}

// proclaim writes new metadata into the key's value, as leader, without a
// new term.
func (l *lockActor) proclaim(c actor.Context, replyTo *actor.PID, m *messages.Proclaim) {
	if l.state != leading {
		l.answer(c, replyTo, messages.ElectionError{Resource: l.resource, CandidateID: l.opts.CandidateID, Op: "proclaim",
			Err: messages.ErrNotLeader, At: time.Now()})
		return
	}
	v, _ := consul.DecodeValue(l.value)
	v.Metadata, v.Token = m.Metadata, l.token
	value := consul.EncodeValue(v)
	token, session, metadata := l.token, l.session.ID, m.Metadata
	l.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		_, err := l.backend.Proclaim(ctx, l.key, session, value)
		return &proclaimDone{token: token, metadata: metadata, value: value, replyTo: replyTo, err: err}
	})
}

func (l *lockActor) proclaimDone(c actor.Context, m *proclaimDone) {
	switch {
	case m.err != nil:
		// Not a lost leadership: if the key is gone, the key watcher says so.
		l.consulError("proclaim", m.err)
		failure := messages.ElectionError{Resource: l.resource, CandidateID: l.opts.CandidateID, Op: "proclaim", Err: m.err, At: time.Now()}
		l.publish(failure)
		l.answer(c, m.replyTo, failure)
	case l.state != leading || m.token != l.token:
		l.answer(c, m.replyTo, messages.ElectionError{Resource: l.resource, CandidateID: l.opts.CandidateID, Op: "proclaim",
			Err: messages.ErrNotLeader, At: time.Now()})
	default:
		l.value, l.metadata = m.value, m.metadata
		leader := l.lastLeader
		leader.Metadata = m.metadata
		l.reportLeader(leader)
		l.answer(c, m.replyTo, l.stateReport())
	}
}

// answer replies to a request, if it was one.
func (l *lockActor) answer(c actor.Context, to *actor.PID, msg any) {
	if to != nil {
		c.Send(to, msg)
	}
}

func (l *lockActor) stateReport() *messages.State {
	return &messages.State{Resource: l.resource, Campaigning: l.withdrawing == nil,
		IsLeader: l.state == leading, FencingToken: l.token, Leader: l.lastLeader,
		Candidates: slices.Clone(l.candidates)}
}
