package actors

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/consul"
	"go.uber.org/zap"
)

// NewProps validates opts and returns the Props of an election root: spawn it
// in your actor system (or as a child of your own actor) and it campaigns for
// opts.Resources and for every resource sent to it in a messages.Campaign.
//
// Events (messages.Event) are published on the actor system's EventStream,
// from a goroutine of the engine's own (so a slow subscriber never delays a
// step-down); every event names the candidate, so several engines can share
// one system.
//
// To stop gracefully, Request messages.Stop and wait for messages.Stopped:
// leaders release their keys (a standby takes over at once) and the session
// is destroyed. Stopping the root otherwise (poison, a parent's stop or
// restart) destroys the session without releasing first, so lock-delay
// applies before another candidate can lead.
func NewProps(opts Options) (*actor.Props, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.CandidateID == "" {
		opts.CandidateID = defaultCandidateID()
	}
	logger := opts.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	logger = logger.With(zap.String("candidate", opts.CandidateID))
	backend, closeBackend := opts.Backend, func() {}
	if backend == nil {
		client, err := consul.NewClient(opts.ConsulConfig())
		if err != nil {
			return nil, err
		}
		backend = client
		closeBackend = client.Close
	}
	base := engine{opts: opts, backend: backend, prefix: opts.KeyPrefix, logger: logger, closeBackend: closeBackend,
		timing: opts.Timing(), refreshes: &refreshes{}}
	if opts.FastFailover || opts.Service.Name != "" {
		failover, ok := backend.(FailoverBackend)
		if !ok {
			return nil, fmt.Errorf("FastFailover and Service: the backend %T cannot register services (it does not implement actors.FailoverBackend)", backend)
		}
		base.failover = failover
	}
	producer := func() actor.Actor { return &electionRoot{base: base} }
	return actor.PropsFromProducer(producer, actor.WithSupervisor(newRestartStrategy(logger, false))), nil
}
