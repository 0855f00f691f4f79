package actors

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/internal/backoff"
	"github.com/excalibur/consul-elect/internal/protocol"
	"go.uber.org/zap"
)

// serviceActor keeps this candidate's instance of Options.Service on the
// local agent: tagged leader while it leads (Options.Service.Resource, or any
// resource), standby otherwise, its TTL check kept passing, deregistered on
// stop. A step-down re-tags the instance at once, long before StopBy.
type serviceActor struct {
	*engine
	calls   *calls
	leading map[string]bool
	// registered is the tag as last registered; want, as it should be.
	registered, want *bool
	registering      bool
	retry            backoff.Backoff
	feeding          bool
}

type (
	serviceRegistered struct {
		leader bool
		err    error
	}
	serviceFeed struct{}
	serviceFed  struct {
		sentAt time.Time
		err    error
	}
)

func (s *serviceActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		s.calls = newCalls(c)
		s.retry = backoff.New(100*time.Millisecond, 5*time.Second)
		s.leading = map[string]bool{}
		s.set(false)
	case *protocol.Leading:
		if m.Leading {
			s.leading[m.Resource] = true
		} else {
			delete(s.leading, m.Resource)
		}
		s.set(s.isLeader())
	case *serviceRegistered:
		s.registering = false
		if m.err != nil {
			s.consulError("register service", m.err)
			wait := s.retry.Next()
			s.logger.Warn("registering the service instance failed; retrying", zap.String("service", s.opts.Service.Name),
				zap.Error(m.err), zap.Duration("in", wait))
			s.calls.after(wait, &serviceFeed{}) // the feed registers again
			return
		}
		s.retry.Reset()
		s.registered = &m.leader
		s.register()
		if !s.feeding {
			s.feeding = true
			s.calls.after(s.opts.Service.checkTTL()/2, &serviceFeed{})
		}
	case *serviceFeed:
		if s.registered == nil {
			s.register()
			return
		}
		s.feed()
	case *serviceFed:
		every := s.opts.Service.checkTTL() / 2
		if m.err != nil {
			s.consulError("update service check", m.err)
			every = s.opts.Service.checkTTL() / 10
			s.registered = nil // the agent may have lost it (restarted): register again
		}
		s.calls.after(max(time.Until(m.sentAt.Add(every)), 0), &serviceFeed{})
	case *actor.Stopping:
		s.calls.stop()
		ctx, cancel := context.WithTimeout(context.Background(), destroyTimeout)
		defer cancel()
		id := s.opts.Service.instance(s.opts.CandidateID, false).ID
		if err := s.failover.DeregisterService(ctx, id); err != nil {
			s.logger.Warn("could not deregister the service instance; Consul reaps it a minute after its check went critical",
				zap.String("service", id), zap.Error(err))
		}
	case *actor.Restarting:
		s.calls.stop()
	}
}

func (s *serviceActor) isLeader() bool {
	if r := s.opts.Service.Resource; r != "" {
		return s.leading[r]
	}
	return len(s.leading) > 0
}

// set asks for the instance to be tagged leader or standby.
func (s *serviceActor) set(leader bool) {
	s.want = &leader
	s.register()
}

// register registers the instance with the wanted tag, unless it is so
// already or a registration is in flight (its answer registers again).
func (s *serviceActor) register() {
	if s.registering || (s.registered != nil && *s.registered == *s.want) {
		return
	}
	s.registering = true
	leader := *s.want
	instance := s.opts.Service.instance(s.opts.CandidateID, leader)
	s.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		return &serviceRegistered{leader: leader, err: s.failover.RegisterService(ctx, instance)}
	})
}

func (s *serviceActor) feed() {
	checkID := s.opts.Service.instance(s.opts.CandidateID, false).CheckID
	s.calls.run(func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, s.opts.Service.checkTTL()/2)
		defer cancel()
		sentAt := time.Now()
		return &serviceFed{sentAt: sentAt, err: s.failover.UpdateCheck(ctx, checkID, "passing", "")}
	})
}
