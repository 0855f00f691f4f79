package actors

import (
	"context"
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/protocol"
	"github.com/excalibur/consul-elect/messages"
	"go.uber.org/zap"
)

// lockActor campaigns for one resource. It acquires the key when it is free
// and a session is ready, leads until the key or the session is lost, and
// releases on resign or stop. It learns of the key from the key watcher
// (through the root) and never polls.
//
// Leadership is lost locally first: the actor publishes LeadershipLost, then
// talks to Consul.
type lockActor struct {
	*engine
	resource string
	key      string
	metadata map[string]string

	calls   *calls
	parent  *actor.PID
	session protocol.SessionReady // ID "" while there is none
	entry   protocol.KeyEntry
	known   bool // entry has been received

	acquiring bool
	gen       uint64 // tags acquire results
	leading   bool
	token     uint64 // fencing token of the current leadership
	value     []byte // written with the current leadership

	releasing    bool // a release is in flight: acquiring now would race it
	holdOffUntil time.Time
	retryAt      *time.Timer
	delayRetry   backoff
	freedAt      time.Time // when the key was seen freed by another session
	lastLeader   messages.LeaderChanged
	conflict     bool // a conflict was reported for the current entry
	withdrawing  *messages.Reason
}

type (
	acquired struct {
		gen   uint64
		entry consul.Entry
		err   error
	}
	retryAcquire struct{}
	released     struct{}
	releaseDone  struct{ then any }
)

// releasedHoldOff is how long, at least, a leader whose key was released by
// someone else waits before campaigning again (LockDelay if longer).
const releasedHoldOff = time.Second

// lockFailure is the panic that makes the supervisor restart a lock actor
// after a Consul error it cannot resolve by waiting for the key.
type lockFailure struct{ err error }

func (f lockFailure) String() string { return "lock: " + f.err.Error() }

func (l *lockActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		l.calls, l.parent = newCalls(c), c.Parent()
		l.delayRetry = newBackoff(50*time.Millisecond, time.Second)
		c.Request(c.Parent(), &protocol.ChildStarted{Resource: l.resource})
	case *protocol.SessionReady:
		l.session = *m
		l.consider()
	case *protocol.SessionGone:
		if m.ID == l.session.ID {
			l.stepDown(m.Reason, m.Err) // while l.session still names the session that led
			l.session = protocol.SessionReady{}
			l.gen++
			l.acquiring = false
		}
	case *protocol.KeyState:
		if l.leading && m.Entry.Observed < l.token {
			return // read before our acquisition: it says nothing about it
		}
		l.observe(m.Entry)
		l.consider()
	case *acquired:
		// A result of an older generation is dropped. If it acquired the key
		// after we stopped wanting it (resigned, session changed), the next
		// KeyState shows our session holding it and consider() releases or
		// adopts it.
		if m.gen == l.gen {
			l.acquired(c, m)
		}
	case *retryAcquire:
		l.retryAt = nil
		l.consider()
	case *messages.Resign:
		l.holdOffUntil = time.Now().Add(m.HoldOff)
		if l.acquiring {
			// The acquire in flight must not make us lead; if it lands, the
			// key watcher shows our session holding the key and consider()
			// releases it.
			l.gen++
			l.acquiring = false
		}
		if l.leading {
			l.stepDown(messages.ReasonResigned, nil)
		}
		// This hold-off replaces any earlier one, shorter or longer.
		l.calls.cancelTimer(l.retryAt)
		l.retryAt = nil
		if m.HoldOff > 0 {
			l.retryAt = l.calls.after(m.HoldOff, &retryAcquire{})
		}
		l.consider()
	case *messages.GetState:
		c.Respond(&messages.State{Resource: l.resource, Campaigning: l.withdrawing == nil,
			IsLeader: l.leading, FencingToken: l.token, Leader: l.lastLeader})
	case *messages.Withdraw:
		l.withdraw(messages.ReasonResigned)
	case *messages.Stop:
		l.withdraw(messages.ReasonStopped)
	case *releaseDone:
		l.releasing = false
		if _, ok := m.then.(*released); ok {
			c.Send(c.Parent(), &protocol.Released{Resource: l.resource})
		}
		l.consider()
	case *actor.Stopping:
		l.calls.stop()
		l.stepDown(messages.ReasonStopped, nil)
	case *actor.Restarting:
		l.calls.stop()
		l.stepDown(messages.ReasonError, nil)
	}
}

// observe takes in the latest entry of the key: a leader checks it still
// holds it; everyone reports a change of leader.
func (l *lockActor) observe(e protocol.KeyEntry) {
	prev := l.entry
	l.entry, l.known = e, true
	if prev.Session != "" && e.Session == "" && prev.Session != l.session.ID {
		l.freedAt = time.Now()
	}
	if l.leading {
		switch {
		case !e.Exists:
			l.stepDown(messages.ReasonKeyDeleted, nil)
		case e.Foreign:
			l.stepDown(messages.ReasonKeyChanged, nil)
		case e.Session != l.session.ID:
			l.stepDown(messages.ReasonKeyTaken, nil)
			if e.Session == "" {
				// Released by someone else (an operator moving leadership):
				// let another candidate have it.
				l.holdOffUntil = time.Now().Add(max(l.opts.LockDelay, releasedHoldOff))
				l.retryAt = l.calls.after(time.Until(l.holdOffUntil), &retryAcquire{})
			}
		}
	}
	if !e.Foreign {
		l.conflict = false
	}
	l.reportLeader(messages.LeaderChanged{Resource: l.resource, CandidateID: l.opts.CandidateID, LeaderID: e.HolderID, Node: e.Node,
		Session: e.Session, FencingToken: e.ModifyIndex, Since: e.Since})
}

// reportLeader publishes LeaderChanged when the holder differs from the last
// one reported.
func (l *lockActor) reportLeader(now messages.LeaderChanged) {
	if now.Session == "" {
		now = messages.LeaderChanged{Resource: l.resource, CandidateID: l.opts.CandidateID}
	}
	if now.Session == l.lastLeader.Session && now.LeaderID == l.lastLeader.LeaderID {
		return
	}
	l.lastLeader = now
	l.publish(now)
}

// consider acquires the key when it can: a session is ready, the key's state
// is known and free (or held by our own session), and nothing holds us back.
func (l *lockActor) consider() {
	switch {
	case l.withdrawing != nil, l.leading, l.acquiring, l.releasing, l.session.ID == "", !l.known, l.retryAt != nil:
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
	case time.Now().Before(l.holdOffUntil):
		if l.entry.Session == l.session.ID {
			l.release(l.entry.Session, nil) // acquired in flight before the resign
		}
		return
	case l.entry.Session != "" && l.entry.Session != l.session.ID:
		return // someone leads; the key watcher tells us when that changes
	}
	l.acquire()
}

func (l *lockActor) acquire() {
	l.acquiring = true
	l.gen++
	gen, session := l.gen, l.session
	l.value = consul.EncodeValue(consul.Value{CandidateID: l.opts.CandidateID, Node: session.Node,
		AcquiredAt: time.Now().UTC(), Metadata: l.metadata})
	value := l.value
	if async, ok := l.backend.(AsyncAcquirer); ok {
		ctx, cancel := context.WithTimeout(l.calls.ctx, requestTimeout)
		async.AcquireAsync(ctx, l.key, session.ID, value, func(entry consul.Entry, err error) {
			cancel()
			l.calls.deliver(&acquired{gen: gen, entry: entry, err: err})
		})
		return
	}
	l.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		entry, err := l.backend.Acquire(ctx, l.key, session.ID, value)
		return &acquired{gen: gen, entry: entry, err: err}
	})
}

func (l *lockActor) acquired(c actor.Context, m *acquired) {
	l.acquiring = false
	if m.err != nil {
		l.consulError("acquire", m.err)
	}
	switch {
	case m.err == nil:
		l.leading, l.token = true, m.entry.ModifyIndex
		l.delayRetry.reset()
		c.Send(c.Parent(), &protocol.Holding{Key: l.key, Session: l.session.ID, Token: l.token})
		l.logger.Info("leadership acquired", zap.String("resource", l.resource),
			zap.String("session", l.session.ID), zap.Uint64("fencing_token", l.token))
		l.publish(messages.LeadershipAcquired{Resource: l.resource, Key: l.key, CandidateID: l.opts.CandidateID,
			Session: l.session.ID, FencingToken: l.token, LockIndex: m.entry.LockIndex, At: time.Now()})
		v, _ := consul.DecodeValue(l.value)
		l.reportLeader(messages.LeaderChanged{Resource: l.resource, CandidateID: l.opts.CandidateID, LeaderID: l.opts.CandidateID, Node: l.session.Node,
			Session: l.session.ID, FencingToken: l.token, Since: v.AcquiredAt})
	case errors.Is(m.err, consul.ErrLockHeld):
		// Someone was faster; the key watcher shows who.
	case errors.Is(m.err, consul.ErrLockDelay):
		l.retryAt = l.calls.after(l.lockDelayLeft(), &retryAcquire{})
	case errors.Is(m.err, consul.ErrSessionGone):
		c.Send(c.Parent(), &protocol.SessionGone{ID: l.session.ID, Reason: messages.ReasonSessionInvalidated, Err: m.err})
	default:
		l.publish(messages.ElectionError{Resource: l.resource, Op: "acquire", Err: m.err, At: time.Now()})
		panic(lockFailure{m.err})
	}
}

// lockDelayLeft is when to try again after Consul refused for lock-delay.
// Consul does not say how long is left; the delay is the last holder's and
// started when its session was invalidated, just before we saw the key freed.
func (l *lockActor) lockDelayLeft() time.Duration {
	if d := l.entry.HolderLockDelay; d >= 0 && !l.freedAt.IsZero() {
		if left := time.Until(l.freedAt.Add(d)); left > 0 {
			return left
		}
	}
	return l.delayRetry.next()
}

// stepDown ends the leadership, if any, and says so at once. A resigning or
// stopping leader then releases the key so a standby can take over without
// lock-delay.
func (l *lockActor) stepDown(reason messages.Reason, err error) {
	if !l.leading {
		return
	}
	l.leading = false
	l.logger.Info("leadership lost", zap.String("resource", l.resource), zap.String("reason", string(reason)), zap.Error(err))
	l.publish(messages.LeadershipLost{Resource: l.resource, CandidateID: l.opts.CandidateID, Session: l.session.ID,
		FencingToken: l.token, Reason: reason, Err: err, At: time.Now(),
		StopBy: l.refreshes.stopBy(l.session.ID, l.timing)})
	l.token = 0
	if reason == messages.ReasonResigned || reason == messages.ReasonStopped {
		if l.calls.ctx.Err() == nil {
			l.release(l.session.ID, nil)
		}
	}
}

// release unlocks the key for session in a goroutine, then reports
// releaseDone (carrying then). No acquire starts meanwhile: with one session
// for every term, a late release would unlock the next term's key.
func (l *lockActor) release(session string, then any) {
	value := l.value
	l.releasing = true
	l.calls.system.Root.Send(l.parent, &protocol.Releasing{Key: l.key})
	l.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, destroyTimeout)
		defer cancel()
		if err := l.backend.Release(ctx, l.key, session, value); err != nil {
			l.logger.Warn("could not release the key; it is released when the session ends",
				zap.String("key", l.key), zap.Error(err))
		}
		return &releaseDone{then: then}
	})
}

// withdraw stops campaigning: a leader steps down and releases; then the
// root hears Released.
func (l *lockActor) withdraw(reason messages.Reason) {
	if l.withdrawing != nil {
		return
	}
	l.withdrawing = &reason
	l.gen++
	wasLeading := l.leading
	if wasLeading {
		l.leading = false
		l.publish(messages.LeadershipLost{Resource: l.resource, CandidateID: l.opts.CandidateID, Session: l.session.ID,
			FencingToken: l.token, Reason: reason, At: time.Now(), StopBy: l.refreshes.stopBy(l.session.ID, l.timing)})
	}
	if wasLeading || l.acquiring || (l.session.ID != "" && l.entry.Session == l.session.ID) {
		l.release(l.session.ID, &released{})
		return
	}
	l.calls.run(func(context.Context) any { return &releaseDone{then: &released{}} })
}
