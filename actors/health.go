package actors

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/internal/backoff"
	"github.com/excalibur/consul-elect/internal/protocol"
	"go.uber.org/zap"
)

// healthWatcher watches HealthCheckID on the session's node with blocking
// queries and tells the root when it is critical, so that leaders step down
// at once. With FastFailover it also feeds the candidate's own TTL check
// every CheckUpdateEvery and reports each success (CheckFed), which moves
// the self-fence deadline; failed updates are retried on the check's
// refreshSchedule (every CheckRetryEvery, one last attempt shortly before
// the check's step-down point).
//
// Consul invalidates the sessions bound to a check in the same write that
// marks it critical, so this step-down cannot come before the invalidation;
// what keeps the next leader out until the old one has stopped is the
// session's lock-delay.
type healthWatcher struct {
	*engine
	calls    *calls
	node     string
	session  string
	index    uint64
	gen      uint64
	reported bool // critical already reported for this session
	retry    backoff.Backoff
	feeding  refreshSchedule
	lastFed  time.Time // the check was last set passing by a request sent then
}

type (
	checkRead struct {
		gen      uint64
		index    uint64
		critical bool
		output   string
		err      error
	}
	rewatch  struct{ gen uint64 }
	feedTick struct{}
	fed      struct {
		sentAt time.Time
		err    error
	}
)

func (h *healthWatcher) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		h.calls = newCalls(c)
		h.retry = backoff.New(100*time.Millisecond, 5*time.Second)
		h.feeding = checkSchedule(h.timing)
		c.Request(c.Parent(), &protocol.ChildStarted{})
		if h.opts.FastFailover {
			h.feed()
		}
	case *feedTick:
		h.feed()
	case *fed:
		h.checkUpdated(c, m)
	case *protocol.SessionReady:
		h.session, h.reported = m.ID, false
		if m.CheckFedAt.After(h.lastFed) { // the check was registered passing
			h.lastFed = m.CheckFedAt
		}
		if h.opts.HealthCheckID == "" {
			return
		}
		if m.Node != h.node || h.gen == 0 {
			h.node, h.index = m.Node, 0
			h.gen++
			h.read()
		}
	case *rewatch:
		if m.gen == h.gen {
			h.read()
		}
	case *checkRead:
		if m.gen != h.gen {
			return
		}
		if m.err != nil {
			h.consulError("watch health check", m.err)
			h.index = 0 // the agent may have restarted with a lower index
			wait := h.retry.Next()
			h.logger.Warn("watching the health check failed; retrying", zap.String("check", h.opts.HealthCheckID),
				zap.Error(m.err), zap.Duration("in", wait))
			h.calls.after(wait, &rewatch{gen: h.gen})
			return
		}
		h.retry.Reset()
		h.index = m.index
		if m.critical && !h.reported && h.session != "" {
			h.reported = true
			c.Send(c.Parent(), &protocol.HealthCritical{CheckID: h.opts.HealthCheckID, Output: m.output})
		}
		h.read()
	case *actor.Stopping, *actor.Restarting:
		h.calls.stop()
	}
}

func (h *healthWatcher) feed() {
	checkID := h.opts.failoverCheck().CheckID
	sentAt := time.Now()
	last := h.lastFed
	if !sentAt.Before(last.Add(h.feeding.stepDownAfter)) {
		// Past the step-down point no term is left to protect, and an
		// update is still worth its answer: the next session needs the
		// check passing. Without this, every attempt would be abandoned
		// before it is sent.
		last = time.Time{}
	}
	abandonAt := h.feeding.abandonAt(last, sentAt)
	h.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithDeadline(ctx, abandonAt)
		defer cancel()
		return &fed{sentAt: sentAt, err: h.failover.UpdateCheck(ctx, checkID, "passing", "")}
	})
}

// checkUpdated takes in the result of a check update and schedules the
// next one.
func (h *healthWatcher) checkUpdated(c actor.Context, m *fed) {
	var at time.Time
	if m.err == nil {
		if m.sentAt.After(h.lastFed) {
			h.lastFed = m.sentAt
		}
		c.Send(c.Parent(), &protocol.CheckFed{SessionID: h.session, SentAt: m.sentAt})
		at = h.feeding.next(m.sentAt)
	} else {
		h.consulError("refresh fast-failover check", m.err)
		at = h.feeding.retryAt(h.lastFed, m.sentAt, m.err)
		h.logger.Warn("refreshing the fast-failover check failed; retrying", zap.Error(m.err),
			zap.Duration("in", max(time.Until(at), 0)))
	}
	h.calls.after(max(time.Until(at), 0), &feedTick{})
}

func (h *healthWatcher) read() {
	gen, node, index := h.gen, h.node, h.index
	h.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, blockingTimeout(watchWait))
		defer cancel()
		check, next, err := h.backend.NodeCheck(ctx, node, h.opts.HealthCheckID, index, watchWait)
		return &checkRead{gen: gen, index: next, critical: check.Critical(), output: check.Output, err: err}
	})
}
