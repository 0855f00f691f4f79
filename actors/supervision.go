package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
)

// restartStrategy restarts only the failed child, after a capped exponential
// backoff (base, 2·base, 4·base … max). A child that has run for resetAfter
// without failing starts again from base. It never stops or escalates: an
// election failure must not take down the user's actor system.
type restartStrategy struct {
	base, max, resetAfter time.Duration
	logger                *zap.Logger
}

func (s *restartStrategy) HandleFailure(_ *actor.ActorSystem, supervisor actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, _ any) {
	if rs.NumberOfFailures(s.resetAfter) == 0 {
		rs.Reset()
	}
	rs.Fail()
	delay := s.base << min(rs.FailureCount()-1, 20)
	if delay > s.max || delay <= 0 {
		delay = s.max
	}
	s.logger.Warn("restarting a failed election actor", zap.String("actor", child.Id),
		zap.Any("reason", reason), zap.Duration("after", delay), zap.Int("failures", rs.FailureCount()))
	time.AfterFunc(delay, func() { supervisor.RestartChildren(child) })
}
