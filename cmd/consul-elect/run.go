package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
	"go.uber.org/zap"
)

const runSynopsis = "consul-elect run --resource NAME [flags] -- COMMAND [ARGS...]"

const (
	defaultKillGrace = 5 * time.Second
	// startTimeout bounds the first contact with Consul at start-up.
	startTimeout = 15 * time.Second
	// stopTimeout bounds releasing the lock and destroying the session on
	// the way out; after it the session expires by its TTL.
	stopTimeout = 10 * time.Second
)

// The environment a leader's command gets, besides consul-elect's own.
const (
	envResource     = "CONSUL_ELECT_RESOURCE"
	envID           = "CONSUL_ELECT_ID"
	envSession      = "CONSUL_ELECT_SESSION"
	envKey          = "CONSUL_ELECT_KEY"
	envFencingToken = "CONSUL_ELECT_FENCING_TOKEN"
)

type runFlags struct {
	commonFlags
	id          string
	ttl         time.Duration
	lockDelay   time.Duration
	healthCheck string
	killGrace   time.Duration
	metricsAddr string
	failover    bool
	command     []string
}

func runCommand(env *cli, args []string) error {
	var f runFlags
	fs := newFlagSet("run")
	f.commonFlags.register(fs)
	fs.StringVar(&f.id, "id", "", "candidate id, written in the lock key and given to the command (default <hostname>-<pid>)")
	fs.DurationVar(&f.ttl, "ttl", actors.DefaultSessionTTL, "session TTL; Consul accepts none below its session_ttl_min, 10s unless configured otherwise")
	fs.DurationVar(&f.lockDelay, "lock-delay", actors.DefaultLockDelay, "after this candidate's session is invalidated, nobody may lock the key for this long (0s to 60s)")
	fs.StringVar(&f.healthCheck, "health-check", "", "`ID` of a health check of the local agent: when it goes critical, the leader steps down")
	fs.DurationVar(&f.killGrace, "kill-grace", defaultKillGrace, "how long the command has to exit after SIGTERM before it is killed with SIGKILL")
	fs.BoolVar(&f.failover, "fast-failover", false, fmt.Sprintf("register a per-candidate TTL check (%s, refreshed every %s) and bind the session to it: a killed leader is replaced after that TTL instead of up to twice --ttl; needs --kill-grace below %s",
		actors.DefaultFastFailoverTTL, actors.DefaultFastFailoverTTL/2, actors.DefaultFastFailoverTTL*2/5))
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve /metrics (Prometheus) and /healthz (503 once session renewals have failed for a TTL) on this `ADDR`, e.g. 127.0.0.1:9100")
	if err := parseFlags(env, fs, runSynopsis, args); err != nil {
		return err
	}
	f.command = fs.Args()
	if err := f.validate(); err != nil {
		return err
	}
	if f.id == "" {
		f.id = defaultCandidateID()
	}

	// The engine names the candidate (and the resource) in its own logs.
	engineLogger := f.newLogger(env.stderr)
	defer func() { _ = engineLogger.Sync() }()
	logger := engineLogger.With(zap.String("resource", f.resource), zap.String("candidate", f.id))
	if f.lockDelay < f.killGrace {
		logger.Warn("--lock-delay is shorter than --kill-grace: if Consul invalidates this leader's session (an operator, a failed node or health check), another candidate may start its command before this one's is killed",
			zap.Duration("lock_delay", f.lockDelay), zap.Duration("kill_grace", f.killGrace))
	}

	client, err := f.client()
	if err != nil {
		return err
	}
	defer client.Close()

	opts := actors.DefaultOptions()
	opts.Datacenter = f.datacenter
	opts.KeyPrefix = f.prefix
	opts.SessionTTL = f.ttl
	opts.LockDelay = f.lockDelay
	opts.HealthCheckID = f.healthCheck
	opts.FastFailover = f.failover
	// The engine must step down early enough for the command to be gone,
	// kill grace included, TTL/10 before Consul could expire the session.
	opts.SelfFenceMargin = f.killGrace
	opts.CandidateID = f.id
	opts.Backend = client
	opts.Logger = engineLogger

	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	metrics, err := newRunMetrics(f.resource, f.ttl)
	if err != nil {
		return err
	}
	opts.Observer = metrics.engine
	if f.metricsAddr != "" {
		stopServing, err := metrics.serve(f.metricsAddr, logger)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		defer stopServing()
	}

	// Reach Consul once before anything else, for a clear error at start-up.
	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if _, err := client.Agent(startCtx); err != nil {
		if errors.Is(err, consul.ErrPermissionDenied) {
			return fmt.Errorf("Consul at %s denied the ACL token (--token, --token-file, CONSUL_HTTP_TOKEN): %w", f.consulAddress(), err)
		}
		return fmt.Errorf("cannot reach Consul at %s: %w", f.consulAddress(), err)
	}
	election, err := consulelect.Start(startCtx, opts)
	if err != nil {
		return fmt.Errorf("starting the election: %w", err)
	}
	r := &runner{flags: &f, election: election, logger: logger, metrics: metrics}
	return r.run(ctx)
}

// fenceWindow is the engine's self-fence window for these flags (see
// actors.Options.FenceWindow).
func (f *runFlags) fenceWindow() time.Duration {
	opts := actors.Options{SessionTTL: f.ttl, LockDelay: f.lockDelay}
	return opts.Timing().FenceWindow
}

func (f *runFlags) validate() error {
	var errs []error
	if err := f.commonFlags.validate(); err != nil {
		errs = append(errs, err)
	}
	if len(f.command) == 0 {
		errs = append(errs, errors.New("COMMAND is missing: "+runSynopsis))
	} else if _, err := exec.LookPath(f.command[0]); err != nil {
		errs = append(errs, fmt.Errorf("COMMAND %q: %v", f.command[0], err))
	}
	if f.ttl < actors.MinSessionTTL || f.ttl > actors.MaxSessionTTL {
		errs = append(errs, fmt.Errorf("--ttl %s: must be between %s and %s", f.ttl, actors.MinSessionTTL, actors.MaxSessionTTL))
	}
	if f.lockDelay < 0 || f.lockDelay > actors.MaxLockDelay {
		errs = append(errs, fmt.Errorf("--lock-delay %s: must be between 0s and %s", f.lockDelay, actors.MaxLockDelay))
	}
	switch {
	case f.killGrace < 0:
		errs = append(errs, fmt.Errorf("--kill-grace %s: must not be negative", f.killGrace))
	case f.ttl > 0 && f.fenceWindow()/10+f.killGrace >= f.fenceWindow()/2:
		// A leader that cannot renew must have stopped its command by
		// W − W/10 after its last renewal, W the fence window
		// min(--ttl, --lock-delay); it starts stopping kill grace before
		// that, which must leave room for a renewal and its retries.
		window := f.fenceWindow()
		errs = append(errs, fmt.Errorf("--kill-grace %s is too long for the fence window %s (the shorter of --ttl %s and --lock-delay %s): a leader that cannot renew must start stopping its command by window − window/10 − kill grace after its last renewal, which must be later than window/2; raise --ttl and --lock-delay above %s or lower --kill-grace below %s",
			f.killGrace, window, f.ttl, f.lockDelay, f.killGrace*5/2, window*2/5))
	}
	if ttl := actors.DefaultFastFailoverTTL; f.failover && ttl/10+f.killGrace >= ttl/2 {
		// With fast failover the check's TTL is a second fence window.
		errs = append(errs, fmt.Errorf("--fast-failover: --kill-grace %s is too long for the fast-failover check's TTL %s; lower --kill-grace below %s",
			f.killGrace, ttl, ttl*2/5))
	}
	if f.failover && f.datacenter != "" {
		errs = append(errs, errors.New("--fast-failover cannot be used with --datacenter: the check lives on the local agent"))
	}
	if strings.ContainsAny(f.id, "\x00\n\r") || len(f.id) > 256 {
		errs = append(errs, errors.New("--id: at most 256 characters, no control characters"))
	}
	if strings.TrimSpace(f.healthCheck) != f.healthCheck {
		errs = append(errs, fmt.Errorf("--health-check %q has leading or trailing spaces", f.healthCheck))
	}
	if f.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(f.metricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-addr %q: want host:port: %v", f.metricsAddr, err))
		}
	}
	return joinUsage(errs)
}

// defaultCandidateID is <hostname>-<pid>, as the engine's own default, so
// that the command can be told its id.
func defaultCandidateID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// runner runs the command during each term of leadership.
type runner struct {
	flags    *runFlags
	election *consulelect.Election
	logger   *zap.Logger
	metrics  *runMetrics
}

// startupError is a problem Consul will not get over by itself (a denied
// token, a TTL below the server's minimum, a foreign key at the lock's path),
// met before the candidate first learned who leads: consul-elect exits.
type startupError struct{ err error }

func (e *startupError) Error() string { return "cannot campaign: " + e.err.Error() }
func (e *startupError) Unwrap() error { return e.err }

// run campaigns until interrupted or until the command exits on its own,
// then releases the lock and destroys the session.
func (r *runner) run(signals context.Context) error {
	ctx, fail := context.WithCancelCause(signals)
	defer fail(nil)
	events := r.election.Events() // before campaigning, so that no event is missed
	eventsDone := make(chan struct{})
	go func() {
		defer close(eventsDone)
		r.watchEvents(events, fail)
	}()

	err := r.election.Campaign(r.flags.resource, nil)
	if err == nil {
		err = r.lead(ctx)
	}

	r.logger.Info("releasing the lock and destroying the session")
	stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	if stopErr := r.election.Stop(stopCtx); stopErr != nil {
		r.logger.Warn("could not stop cleanly; the session expires after its TTL", zap.Error(stopErr))
	}
	cancel()
	<-eventsDone
	return err
}

// lead waits for each term of leadership and runs the command during it.
func (r *runner) lead(ctx context.Context) error {
	for {
		if ctx.Err() != nil {
			return r.stopped(ctx, ctx.Err()) // AwaitLeadership would still hand out a leadership
		}
		lead, err := r.election.AwaitLeadership(ctx, r.flags.resource)
		if err != nil {
			return r.stopped(ctx, err)
		}
		if lead.Context.Err() != nil {
			continue // lost before we could start
		}
		child, err := r.startCommand(lead)
		if err != nil {
			return err
		}
		select {
		case <-lead.Context.Done():
			r.logger.Warn("leadership lost; stopping the command", zap.Uint64("fencing_token", lead.FencingToken))
			r.stopCommand(child, lead)
		case <-ctx.Done():
			r.logger.Info("stopping the command before releasing the lock")
			r.stopCommand(child, lead)
			return r.stopped(ctx, ctx.Err())
		case <-child.done:
			r.metrics.commandRunning.Set(0)
			r.logger.Info("the command exited; releasing the lock", zap.Int("exit_code", child.exitCode))
			return &exitCodeError{code: child.exitCode}
		}
	}
}

// stopped says why lead ended: a signal (exit 0) or a start-up error.
func (r *runner) stopped(ctx context.Context, err error) error {
	var startup *startupError
	if errors.As(context.Cause(ctx), &startup) {
		return startup
	}
	if ctx.Err() != nil {
		return nil // SIGINT or SIGTERM
	}
	return err
}

func (r *runner) startCommand(lead *consulelect.Leadership) (*child, error) {
	env := append(os.Environ(),
		envResource+"="+r.flags.resource,
		envID+"="+r.flags.id,
		envSession+"="+lead.Session,
		envKey+"="+r.flags.key(),
		envFencingToken+"="+strconv.FormatUint(lead.FencingToken, 10),
	)
	child, err := startChild(r.flags.command, env, r.logger)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", r.flags.command[0], err)
	}
	r.metrics.commandRunning.Set(1)
	r.metrics.commandStarts.Inc()
	r.logger.Info("leading; command started", zap.Int("pid", child.pid), zap.Uint64("fencing_token", lead.FencingToken))
	return child, nil
}

// stopCommand ends the command of a term before Consul could let another
// candidate in: SIGTERM, then SIGKILL after the kill grace, or at once if
// that moment has already passed (this process was frozen).
func (r *runner) stopCommand(c *child, lead *consulelect.Leadership) {
	var killBy time.Time // zero: no limit but the grace
	if lost, ok := lead.Lost(); ok {
		killBy = lost.StopBy
	}
	c.stop(r.flags.killGrace, killBy)
	r.metrics.commandRunning.Set(0)
	r.logger.Info("command stopped", zap.Int("exit_code", c.exitCode))
}

// watchEvents logs what the engine observed and ends the run (fail) on an
// error only a person can fix, met at start-up.
func (r *runner) watchEvents(events <-chan messages.Event, fail context.CancelCauseFunc) {
	started := false
	for evt := range events {
		switch m := evt.(type) {
		case messages.LeadershipAcquired:
			started = true
		case messages.LeaderChanged:
			started = started || m.Session != ""
			r.logger.Info("leader changed", zap.String("leader", m.LeaderID), zap.String("node", m.Node),
				zap.String("session", m.Session), zap.Uint64("fencing_token", m.FencingToken))
		case messages.ElectionError:
			// Once running, the engine retries everything: an ACL fixed
			// later, or a key removed, lets it carry on.
			if !started && !consul.Retryable(m.Err) {
				fail(&startupError{err: m.Err})
			}
		}
	}
}
