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

// renewalActor renews the session and owns the self-fence deadline: when no
// renewal sent after lastOK has succeeded by lastOK + StepDownAfter, it tells
// the root the session can no longer be relied on, before another candidate
// could have acquired its keys.
//
// It renews every RenewEvery. Once a renewal has failed it retries on the
// session's refreshSchedule: every RetryEvery after a transient error, with
// one last attempt RetryEvery/2 before the step-down point, so that an
// outage of the agent or of Consul's servers that ends by then costs
// nothing.
type renewalActor struct {
	*engine
	calls    *calls
	plan     refreshSchedule
	session  string
	gen      uint64 // one per session; drops results and timers of older ones
	lastOK   time.Time
	lastFed  time.Time // fast-failover check last set passing
	lastErr  error     // of the failing streak; nil after a success
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
		r.plan = sessionSchedule(r.timing)
		c.Request(c.Parent(), &protocol.ChildStarted{})
	case *protocol.SessionReady:
		r.forget()
		r.session, r.lastOK, r.lastFed = m.ID, m.RenewedAt, m.CheckFedAt
		r.refreshes.set(m.ID, m.RenewedAt, m.CheckFedAt)
		r.refreshed(m.RenewedAt, 0, nil)
		r.schedule(r.plan.next(m.RenewedAt))
	case *protocol.SessionGone:
		if m.ID == r.session {
			r.forget()
		}
	case *protocol.CheckFed:
		// A feed before any session (its id "") fences nothing.
		if r.session != "" && m.SessionID == r.session && m.SentAt.After(r.lastFed) {
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

// schedule sets the next renewal at at and the deadline from lastOK.
func (r *renewalActor) schedule(at time.Time) {
	r.calls.cancelTimer(r.tick)
	r.tick = r.calls.after(max(time.Until(at), 0), &renewTick{gen: r.gen})
	r.fence()
}

// fence sets the self-fence deadline: lastOK + StepDownAfter, and with
// FastFailover no later than lastFed + CheckStepDownAfter (see Timing).
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
	// Taken before the request goes out: Consul restarts the TTL no earlier.
	sentAt := time.Now()
	abandonAt := r.plan.abandonAt(r.lastOK, sentAt)
	r.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithDeadline(ctx, abandonAt)
		defer cancel()
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
		c.Send(c.Parent(), &protocol.Renewed{ID: r.session, SentAt: m.sentAt})
		// Counted from when this renewal was sent, like the deadline: a slow
		// answer must not push the next renewal towards the deadline.
		r.schedule(r.plan.next(m.sentAt))
	case errors.Is(m.err, consul.ErrSessionGone):
		r.logger.Warn("Consul no longer knows the session", zap.String("session", r.session))
		c.Send(c.Parent(), &protocol.SessionGone{ID: r.session, Reason: messages.ReasonSessionInvalidated, Err: m.err})
		r.forget()
	default:
		r.consulError("renew session", m.err)
		if r.lastErr == nil {
			r.publish(messages.ElectionError{Op: "renew session", Err: m.err, At: time.Now()})
		}
		r.lastErr = m.err
		at := r.plan.retryAt(r.lastOK, m.sentAt, m.err)
		r.logger.Warn("renewing the session failed; retrying", zap.String("session", r.session), zap.Error(m.err),
			zap.Duration("in", max(time.Until(at), 0)), zap.Time("step_down_at", r.lastOK.Add(r.timing.StepDownAfter)))
		r.calls.cancelTimer(r.tick)
		r.tick = r.calls.after(max(time.Until(at), 0), &renewTick{gen: r.gen})
	}
}

// deniedRetryEvery is the shortest interval between attempts that failed
// for a reason waiting alone will not cure (a denied token): a candidate
// whose token was revoked must not cost Consul more than a request a second.
const deniedRetryEvery = time.Second

// refreshSchedule is when something that must be refreshed within a window
// is refreshed and retried: the session (RenewEvery, RetryEvery,
// StepDownAfter of Timing) or the fast-failover check (the Check* figures).
// Times count from last, when the last successful refresh was sent; the
// step-down point is last + stepDownAfter.
//
// Attempts go one at a time:
//   - after a success sent at s, the next refresh is at s + every;
//   - after a transient failure (consul.Retryable: 5xx, 429, a transport
//     error or a timeout) of an attempt sent at s, the next is at s + retry,
//     or at once if the answer came later than that — but never later than
//     lastChance = last + stepDownAfter − retry/2 while s is before it: one
//     attempt always goes out shortly before the step-down point;
//   - after any other failure (a denied token), the next is at
//     s + deniedRetryEvery;
//   - an attempt is abandoned after every/2 (at most requestTimeout), and an
//     attempt sent before lastChance no later than lastChance, so that a hung
//     request cannot take the last attempt's place; the last attempt is
//     abandoned at the step-down point, after which it is worth nothing.
//
// So a burst of transient failures that ends before lastChance costs
// nothing, provided the attempt then sent is answered within retry/2: one
// that begins with the refresh at last + every may last up to
// stepDownAfter − every − retry/2; stepDownAfter − every − retry leaves
// the last attempt a whole retry interval.
type refreshSchedule struct {
	every, retry, stepDownAfter time.Duration
}

func sessionSchedule(t Timing) refreshSchedule {
	return refreshSchedule{every: t.RenewEvery, retry: t.RetryEvery, stepDownAfter: t.StepDownAfter}
}

func checkSchedule(t Timing) refreshSchedule {
	return refreshSchedule{every: t.CheckUpdateEvery, retry: t.CheckRetryEvery, stepDownAfter: t.CheckStepDownAfter}
}

// next is when to refresh after a success sent at sentAt.
func (p refreshSchedule) next(sentAt time.Time) time.Time { return sentAt.Add(p.every) }

// lastChance is when the last attempt before the step-down point goes out.
func (p refreshSchedule) lastChance(last time.Time) time.Time {
	return last.Add(p.stepDownAfter - p.retry/2)
}

// retryAt is when to try again after the attempt sent at sentAt failed with
// err; last is zero when no refresh is known to have succeeded.
func (p refreshSchedule) retryAt(last, sentAt time.Time, err error) time.Time {
	if !consul.Retryable(err) {
		return sentAt.Add(deniedRetryEvery)
	}
	at := sentAt.Add(p.retry)
	if last.IsZero() {
		return at
	}
	if final := p.lastChance(last); sentAt.Before(final) && at.After(final) {
		return final
	}
	return at
}

// abandonAt is when the attempt sent at sentAt is given up.
func (p refreshSchedule) abandonAt(last, sentAt time.Time) time.Time {
	at := sentAt.Add(min(p.every/2, requestTimeout))
	if last.IsZero() {
		return at
	}
	limit := last.Add(p.stepDownAfter)
	if final := p.lastChance(last); sentAt.Before(final) {
		limit = final
	}
	return minTime(at, limit)
}
