package actors

import (
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
)

// WithZapLogger routes protoactor-go's own logs (slog) into logger, from
// warnings up: its informational logs (started, stopped, dead letters) are
// noise for an election. Use it when creating the actor system:
//
//	system := actor.NewActorSystem(actors.WithZapLogger(logger))
func WithZapLogger(logger *zap.Logger) actor.ConfigOption {
	if logger == nil {
		logger = zap.NewNop()
	}
	core, err := zapcore.NewIncreaseLevelCore(logger.Core(), zapcore.WarnLevel)
	if err != nil { // the logger is already above Warn
		core = logger.Core()
	}
	handler := zapslog.NewHandler(core, zapslog.WithName("protoactor"))
	return actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(handler) })
}
