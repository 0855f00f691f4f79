package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/internal/backoff"
	"go.uber.org/zap"
)

// restartStrategy restarts only the failed child, after a capped exponential
// backoff (base, 2·base, 4·base … max). A child that has run for resetAfter
// without failing starts again from base. It never stops or escalates: an
// election failure must not take down the user's actor system.
type restartStrategy struct {
	base, max, resetAfter time.Duration
	logger                *zap.Logger
	// tellSupervisor sends the supervisor a childRestarted after each
	// restart (a lock actor then hands its new worker the term).
	tellSupervisor bool
}

// childRestarted tells a supervisor that child has been restarted.
type childRestarted struct{ child *actor.PID }

// Supervision of the election's actors and of the users' workers.
const (
	restartBase       = 100 * time.Millisecond
	restartMax        = 10 * time.Second
	restartResetAfter = 30 * time.Second
)

func newRestartStrategy(logger *zap.Logger, tellSupervisor bool) *restartStrategy {
	return &restartStrategy{base: restartBase, max: restartMax, resetAfter: restartResetAfter, logger: logger, tellSupervisor: tellSupervisor}
}

func (s *restartStrategy) HandleFailure(system *actor.ActorSystem, supervisor actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, _ any) {
	if rs.NumberOfFailures(s.resetAfter) == 0 {
		rs.Reset()
	}
	rs.Fail()
	delay := backoff.Delay(s.base, s.max, rs.FailureCount()-1)
	s.logger.Warn("restarting a failed election actor", zap.String("actor", child.Id),
		zap.Any("reason", reason), zap.Duration("after", delay), zap.Int("failures", rs.FailureCount()))
	time.AfterFunc(delay, func() {
		supervisor.RestartChildren(child)
		if self, ok := supervisor.(interface{ Self() *actor.PID }); ok && s.tellSupervisor {
			system.Root.Send(self.Self(), &childRestarted{child: child})
		}
	})
}
