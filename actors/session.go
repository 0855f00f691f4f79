package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/backoff"
	"github.com/excalibur/consul-elect/internal/protocol"
	"github.com/excalibur/consul-elect/messages"
	"go.uber.org/zap"
)

// sessionActor owns the engine's one Consul session: it creates it, tells the
// root, and when the root reports it gone (SessionGone) destroys what may be
// left of it and creates a new one. On Stop it destroys the session.
type sessionActor struct {
	*engine
	calls    *calls
	id       string
	gen      uint64 // tags create results; a result of an older generation is dropped
	retry    backoff.Backoff
	stopping bool
	replyTo  *actor.PID
}

// Results of the actor's own calls.
type (
	sessionCreated struct {
		gen        uint64
		id         string
		node       string
		sentAt     time.Time
		checkFedAt time.Time
		err        error
	}
	sessionDestroyed struct{}
	createSession    struct{ gen uint64 }
)

// destroyTimeout bounds how long a stopping engine waits for Consul.
const destroyTimeout = 3 * time.Second

func (s *sessionActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		s.calls = newCalls(c)
		s.retry = backoff.New(100*time.Millisecond, 5*time.Second)
		s.create()
	case *createSession:
		if m.gen == s.gen && s.id == "" && !s.stopping {
			s.create()
		}
	case *sessionCreated:
		s.created(c, m)
	case *protocol.SessionGone:
		if m.ID != s.id || s.stopping {
			return
		}
		s.id = ""
		if m.Reason != messages.ReasonSessionInvalidated {
			// It may still exist in Consul (we stopped trusting it, Consul did
			// not drop it): destroy it so that it holds nothing.
			gone := m.ID
			s.calls.run(func(ctx context.Context) any {
				s.destroyUntilGone(ctx, gone)
				return nil
			})
		}
		s.create()
	case *messages.Stop:
		s.stopping, s.replyTo = true, c.Sender()
		s.gen++ // a create in flight is dropped; its session expires by TTL
		id := s.id
		s.id = ""
		s.calls.run(func(ctx context.Context) any {
			if id != "" {
				s.destroy(ctx, id)
			}
			s.deregisterCheck(ctx)
			return &sessionDestroyed{}
		})
	case *sessionDestroyed:
		if s.replyTo != nil {
			c.Send(s.replyTo, &messages.Stopped{})
		}
	case *actor.Stopping:
		s.calls.stop()
		if s.id != "" {
			s.destroy(context.Background(), s.id)
			s.id = ""
		}
		s.deregisterCheck(context.Background())
	case *actor.Restarting:
		s.calls.stop()
		if s.id != "" {
			s.destroy(context.Background(), s.id)
			s.id = ""
		}
	}
}

// destroyUntilGone destroys a session we stopped trusting, retrying while
// Consul does not answer (an agent restarting, say): until it is destroyed
// it holds its keys. After 2×SessionTTL Consul has reaped it anyway.
func (s *sessionActor) destroyUntilGone(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(ctx, 2*s.opts.SessionTTL)
	defer cancel()
	retry := backoff.New(100*time.Millisecond, 2*time.Second)
	for {
		attempt, stop := context.WithTimeout(ctx, destroyTimeout)
		err := s.backend.DestroySession(attempt, id)
		stop()
		if err == nil || errors.Is(err, consul.ErrSessionGone) {
			return
		}
		select {
		case <-ctx.Done():
			s.logger.Warn("could not destroy an abandoned session; Consul reaps it after its TTL",
				zap.String("session", id), zap.Error(err))
			return
		case <-time.After(retry.Next()):
		}
	}
}

// deregisterCheck removes the fast-failover service, if any.
func (s *sessionActor) deregisterCheck(ctx context.Context) {
	if !s.opts.FastFailover {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, destroyTimeout)
	defer cancel()
	check := s.opts.failoverCheck()
	if err := s.failover.DeregisterService(ctx, check.ID); err != nil {
		s.logger.Warn("could not deregister the fast-failover check; Consul reaps it after a minute critical",
			zap.String("service", check.ID), zap.Error(err))
	}
}

func (s *sessionActor) destroy(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(ctx, destroyTimeout)
	defer cancel()
	if err := s.backend.DestroySession(ctx, id); err != nil {
		s.logger.Warn("could not destroy the session; it expires after its TTL", zap.String("session", id), zap.Error(err))
	}
}

// create asks Consul for a new session in a goroutine.
func (s *sessionActor) create() {
	s.gen++
	gen, opts := s.gen, s.opts
	s.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		spec := consul.SessionSpec{Name: "consul-elect " + opts.CandidateID, TTL: opts.SessionTTL, LockDelay: opts.LockDelay}
		agent, err := s.backend.Agent(ctx)
		if err != nil {
			return &sessionCreated{gen: gen, sentAt: time.Now(), err: err}
		}
		spec.Node = agent.Node
		if opts.Datacenter != "" && opts.Datacenter != agent.Datacenter {
			// A session in another datacenter must name a node registered
			// there and cannot carry this agent's checks.
			if opts.HealthCheckID != "" {
				return &sessionCreated{gen: gen, err: &consul.Error{Op: "create session", Kind: consul.ErrRejected,
					Err: fmt.Errorf("HealthCheckID cannot be used with Datacenter %q: a health check of agent %q (datacenter %q) cannot bind a session in another datacenter",
						opts.Datacenter, agent.Node, agent.Datacenter)}}
			}
			if spec.Node, err = s.backend.ServerNode(ctx, opts.Datacenter); err != nil {
				return &sessionCreated{gen: gen, err: err}
			}
			spec.NoChecks = true
		} else if opts.HealthCheckID != "" {
			check, _, err := s.backend.NodeCheck(ctx, agent.Node, opts.HealthCheckID, 0, 0)
			if err != nil {
				return &sessionCreated{gen: gen, err: err}
			}
			spec.NodeChecks = []string{"serfHealth"}
			if check.ServiceID != "" {
				spec.ServiceChecks = []string{opts.HealthCheckID}
			} else {
				spec.NodeChecks = append(spec.NodeChecks, opts.HealthCheckID)
			}
		}
		var checkFedAt time.Time
		if opts.FastFailover {
			// (Re-)register the candidate's check as passing: its TTL runs
			// from here, and the session is bound to it.
			check := opts.failoverCheck()
			s.failPredecessor(ctx, spec.Node, check.CheckID)
			checkFedAt = time.Now()
			if err := s.failover.RegisterService(ctx, check); err != nil {
				return &sessionCreated{gen: gen, err: err}
			}
			// Registering an existing check keeps its status: pass it
			// explicitly. The agent tells the servers apart from the request,
			// and a session asked for before they know the check passes is
			// refused.
			if err := s.failover.UpdateCheck(ctx, check.CheckID, "passing", ""); err != nil {
				return &sessionCreated{gen: gen, err: err}
			}
			s.awaitCheck(ctx, spec.Node, check.CheckID, false)
			if len(spec.NodeChecks) == 0 {
				spec.NodeChecks = []string{"serfHealth"}
			}
			spec.ServiceChecks = append(spec.ServiceChecks, check.CheckID)
		}
		sentAt := time.Now()
		id, err := s.backend.CreateSession(ctx, spec)
		return &sessionCreated{gen: gen, id: id, node: spec.Node, sentAt: sentAt, checkFedAt: checkFedAt, err: err}
	})
}

// checkSyncWait bounds how long a new session waits for the servers to
// know the status the agent was given for the candidate's check.
const checkSyncWait = 2 * time.Second

// failPredecessor fails the candidate's fast-failover check, if it is
// registered, and waits until the servers know. A process with this
// candidate id that died and was started again at once (a supervisor's
// restart) may have left a session bound to the check; registering the check
// as passing again would keep that session, and the keys it holds, alive
// until Consul reaps it, up to 2×SessionTTL. A critical check makes Consul
// invalidate it now, and lock-delay then covers whatever the dead process
// left running. Any session of this engine's own is already gone or
// abandoned when it creates another. Best effort: a failure here only
// leaves the old session to its TTL.
func (s *sessionActor) failPredecessor(ctx context.Context, node, checkID string) {
	if err := s.failover.UpdateCheck(ctx, checkID, "critical", "consul-elect: a new session is being created"); err != nil {
		return // not registered: the first start, or after a clean stop
	}
	// A registration as passing before the servers know would hide it.
	s.awaitCheck(ctx, node, checkID, true)
}

// awaitCheck waits, at most checkSyncWait, until the servers' catalog shows
// the check critical (or not): the agent syncs a check's status to them
// apart from the request that set it.
func (s *sessionActor) awaitCheck(ctx context.Context, node, checkID string, critical bool) {
	ctx, cancel := context.WithTimeout(ctx, checkSyncWait)
	defer cancel()
	var index uint64
	for ctx.Err() == nil {
		check, next, err := s.backend.NodeCheck(ctx, node, checkID, index, checkSyncWait)
		switch {
		case err == nil && check.Critical() == critical:
			return
		case err != nil && next == index:
			// Not answered (a check not yet synced is answered, with an
			// error and the catalog's index): do not spin.
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
		index = next
	}
}

func (s *sessionActor) created(c actor.Context, m *sessionCreated) {
	if m.gen != s.gen {
		if m.err == nil { // created after we stopped wanting it
			id := m.id
			s.calls.run(func(ctx context.Context) any { s.destroy(ctx, id); return nil })
		}
		return
	}
	if m.err != nil {
		s.consulError("create session", m.err)
		s.refreshed(m.sentAt, 0, m.err)
		wait := s.retry.Next()
		if s.retry.Failures() == 1 || !consul.Retryable(m.err) {
			s.publish(messages.ElectionError{Op: "create session", Err: m.err, At: time.Now()})
		}
		level := zap.WarnLevel
		if errors.Is(m.err, consul.ErrPermissionDenied) || errors.Is(m.err, consul.ErrRejected) {
			level = zap.ErrorLevel
		}
		s.logger.Log(level, "could not create the session; retrying", zap.Error(m.err), zap.Duration("in", wait))
		s.calls.after(wait, &createSession{gen: s.gen})
		return
	}
	s.retry.Reset()
	s.id = m.id
	s.logger.Info("session created", zap.String("session", m.id), zap.String("node", m.node))
	c.Send(c.Parent(), &protocol.SessionReady{ID: m.id, Node: m.node, RenewedAt: m.sentAt, CheckFedAt: m.checkFedAt})
}
