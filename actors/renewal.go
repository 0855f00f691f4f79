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

// renewalActor renews the session twice per fence window and owns the
// self-fence deadline: when no renewal sent after lastOK has succeeded by
// lastOK + FenceWindow − margin, it tells the root the session can no longer
// be relied on, before another candidate could have acquired its keys.
type renewalActor struct {
	*engine
	calls    *calls
	session  string
	gen      uint64 // one per session; drops results and timers of older ones
	lastOK   time.Time
	lastFed  time.Time // fast-failover check last set passing
	lastErr  error
	retry    backoff
	renewing bool
	tick     *time.Timer
	deadline *time.Timer
}

type (
	renewTick     struct{ gen uint64 }
	deadlineTick  struct{ gen uint64 }
	renewFinished struct {
		gen    uint64
		sentAt time.Time
		err    error
	}
)

func (r *renewalActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		r.calls = newCalls(c)
		every := r.timing.RenewEvery
		r.retry = newBackoff(min(500*time.Millisecond, every/5), max(every/2, time.Second))
		c.Request(c.Parent(), &protocol.ChildStarted{})
	case *protocol.SessionReady:
		r.forget()
		r.session, r.lastOK, r.lastFed = m.ID, m.RenewedAt, m.CheckFedAt
		r.refreshes.set(m.ID, m.RenewedAt, m.CheckFedAt)
		r.refreshed(m.RenewedAt, 0, nil)
		r.retry.reset()
		r.schedule(time.Until(m.RenewedAt.Add(r.timing.RenewEvery)))
	case *protocol.SessionGone:
		if m.ID == r.session {
			r.forget()
		}
	case *protocol.CheckFed:
		if m.SessionID == r.session && m.SentAt.After(r.lastFed) {
			r.lastFed = m.SentAt
			r.refreshes.set(r.session, time.Time{}, m.SentAt)
			r.fence()
		}
	case *renewTick:
		if m.gen == r.gen && !r.renewing {
			r.renew()
		}
	case *renewFinished:
		if m.gen == r.gen {
			r.finished(c, m)
		}
	case *deadlineTick:
		if m.gen == r.gen {
			reason := messages.ReasonRenewDeadline
			if errors.Is(r.lastErr, consul.ErrPermissionDenied) {
				reason = messages.ReasonPermissionDenied
			}
			r.logger.Warn("no renewal succeeded in time; stepping down before the session can expire",
				zap.String("session", r.session), zap.Time("last_renew_sent", r.lastOK), zap.Error(r.lastErr))
			c.Send(c.Parent(), &protocol.SessionGone{ID: r.session, Reason: reason, Err: r.lastErr})
			r.forget()
		}
	case *actor.Stopping, *actor.Restarting:
		r.calls.stop()
	}
}

// forget stops renewing the current session.
func (r *renewalActor) forget() {
	r.gen++
	r.session, r.renewing, r.lastErr = "", false, nil
	r.calls.cancelTimer(r.tick)
	r.calls.cancelTimer(r.deadline)
}

// schedule sets the next renewal in d and the deadline from lastOK.
func (r *renewalActor) schedule(d time.Duration) {
	r.calls.cancelTimer(r.tick)
	r.tick = r.calls.after(max(d, 0), &renewTick{gen: r.gen})
	r.fence()
}

// fence sets the self-fence deadline: lastOK + FenceWindow − margin, and with
// FastFailover no later than lastFed + FastFailoverTTL − margin (see
// Options.FenceWindow).
func (r *renewalActor) fence() {
	r.calls.cancelTimer(r.deadline)
	deadline := r.lastOK.Add(r.timing.StepDownAfter)
	if r.opts.FastFailover {
		deadline = minTime(deadline, r.lastFed.Add(r.timing.CheckStepDownAfter))
	}
	r.deadline = r.calls.after(max(time.Until(deadline), 0), &deadlineTick{gen: r.gen})
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (r *renewalActor) renew() {
	r.renewing = true
	gen, id := r.gen, r.session
	r.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, r.opts.SessionTTL)
		defer cancel()
		sentAt := time.Now()
		err := r.backend.RenewSession(ctx, id)
		r.refreshed(sentAt, time.Since(sentAt), err)
		return &renewFinished{gen: gen, sentAt: sentAt, err: err}
	})
}

func (r *renewalActor) finished(c actor.Context, m *renewFinished) {
	r.renewing = false
	switch {
	case m.err == nil:
		r.lastOK, r.lastErr = m.sentAt, nil
		r.refreshes.set(r.session, m.sentAt, time.Time{})
		r.retry.reset()
		c.Send(c.Parent(), &protocol.Renewed{ID: r.session, SentAt: m.sentAt})
		// Counted from when this renewal was sent, like the deadline: a slow
		// answer must not push the next renewal towards the deadline.
		r.schedule(time.Until(m.sentAt.Add(r.timing.RenewEvery)))
	case errors.Is(m.err, consul.ErrSessionGone):
		r.logger.Warn("Consul no longer knows the session", zap.String("session", r.session))
		c.Send(c.Parent(), &protocol.SessionGone{ID: r.session, Reason: messages.ReasonSessionInvalidated, Err: m.err})
		r.forget()
	default:
		r.consulError("renew session", m.err)
		r.lastErr = m.err
		wait := r.retry.next()
		if r.retry.failures() == 1 {
			r.publish(messages.ElectionError{Op: "renew session", Err: m.err, At: time.Now()})
		}
		r.logger.Warn("renewing the session failed; retrying", zap.String("session", r.session), zap.Error(m.err), zap.Duration("in", wait))
		r.calls.cancelTimer(r.tick)
		r.tick = r.calls.after(wait, &renewTick{gen: r.gen})
	}
}
