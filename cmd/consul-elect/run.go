package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
	"go.uber.org/zap"
)

const runSynopsis = "consul-elect run --resource NAME [flags] -- COMMAND [ARGS...]"

// runHelp follows the synopsis in run --help.
const runHelp = `
Campaigns for <prefix>/<resource> and runs COMMAND while, and only while, it
leads. COMMAND gets CONSUL_ELECT_RESOURCE, CONSUL_ELECT_ID, CONSUL_ELECT_SESSION,
CONSUL_ELECT_KEY and CONSUL_ELECT_FENCING_TOKEN. When the leadership ends it
gets SIGTERM, and SIGKILL --kill-grace later.

SIGINT, SIGTERM, SIGHUP and SIGQUIT stop the command, release the lock, destroy
the session and exit 0: a standby takes over at once. When COMMAND exits on its
own, run releases and exits with its code. With --timeout, run exits 1 if it
did not lead within that time, without starting COMMAND.

A planned end of a term (consul-elect switchover, --preempt, a stop signal)
stops COMMAND before the lock is released. The release hands the lock to a
live, healthy standby of highest --priority in the same write (with
--release-only, the standbys race for it instead, the highest --priority
first).`

const (
	// defaultKillGrace is --kill-grace unless set. When a short --ttl,
	// --lock-delay or --fast-failover-ttl leaves no room for it, the largest
	// grace that fits is used instead.
	defaultKillGrace = 5 * time.Second
	// minAutoCheckTTL is the shortest fast-failover check TTL run chooses by
	// itself: the engine's default.
	minAutoCheckTTL = actors.DefaultFastFailoverTTL
	// startTimeout bounds the first contact with Consul at start-up.
	startTimeout = 15 * time.Second
	// stopTimeout bounds releasing the lock and destroying the session on
	// the way out; after it the session expires by its TTL.
	stopTimeout = 10 * time.Second
	// drainSlack is how much longer than the kill grace a planned end of a
	// term waits for the command before releasing anyway: the time the kill
	// itself may take (shimKillTimeout on Linux), and a second.
	drainSlack = 3 * time.Second
)

// stopSignals end run as an operator asks it to: stop the command, release,
// destroy the session, exit 0. SIGHUP (a closed terminal, a service
// manager's reload) and SIGQUIT would otherwise end consul-elect without
// releasing, leaving the standby to wait for the session's TTL.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

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
	failoverTTL time.Duration
	timeout     time.Duration
	priority    int
	preempt     bool
	releaseOnly bool
	service     actors.ServiceOptions // Resource is --resource
	command     []string
	// set are the flags given on the command line, by name.
	set map[string]bool
}

func (f *runFlags) register(fs *flag.FlagSet) {
	f.commonFlags.register(fs)
	fs.StringVar(&f.id, "id", "", "candidate id, written in the lock key and given to the command as $"+envID+" (default <hostname>-<pid>)")
	fs.DurationVar(&f.ttl, "ttl", actors.DefaultSessionTTL, "session TTL; Consul accepts none below its session_ttl_min, 10s unless configured otherwise")
	fs.DurationVar(&f.lockDelay, "lock-delay", actors.DefaultLockDelay, "after this candidate's session is invalidated, nobody may lock the key for this long (0s to 60s)")
	fs.StringVar(&f.healthCheck, "health-check", "", "`ID` of a health check of the local agent: when it goes critical, the leader steps down")
	fs.DurationVar(&f.killGrace, "kill-grace", defaultKillGrace, fmt.Sprintf("how long the command has to exit after SIGTERM before it is killed with SIGKILL; a leader that cannot renew starts stopping it this long before it must be gone (default %s, or the most that the fence window min(--ttl, --lock-delay) and --fast-failover-ttl leave room for)", defaultKillGrace))
	fs.BoolVar(&f.failover, "fast-failover", false, "register a per-candidate TTL check (--fast-failover-ttl) on the local agent and bind the session to it: a killed leader is replaced after that check's TTL instead of up to twice --ttl")
	fs.DurationVar(&f.failoverTTL, "fast-failover-ttl", 0, fmt.Sprintf("TTL of the --fast-failover check, between 1s and --ttl; it must leave room for --kill-grace (default: the shortest whole second from %s that does, at most --ttl: %s with the default --kill-grace)",
		minAutoCheckTTL, defaultCheckTTL()))
	fs.DurationVar(&f.timeout, "timeout", 0, "give up if not leader within this long after campaigning starts: exit 1 without having started COMMAND (default 0s: wait forever)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve /metrics (Prometheus), /healthz (503 once no session renewal has succeeded until the step-down point) and /leader (200 while this candidate leads --resource, else 503: a load balancer's check) on this `ADDR`, e.g. 127.0.0.1:9100")
	fs.IntVar(&f.priority, "priority", 0, "rank among the candidates, higher first: a freed lock is left to the live, healthy candidate of highest priority, and switchover without --to picks it")
	fs.BoolVar(&f.releaseOnly, "release-only", false, "on a planned end, only release the lock for the standbys to race for, instead of handing it to one in the same write (a standby frozen at that moment would keep it until its session ends)")
	fs.BoolVar(&f.preempt, "preempt", false, fmt.Sprintf("while leading, hand over (stop the command, then release) to a live, healthy candidate of higher --priority, once the term has lasted %s", actors.PreemptAfter))
	fs.StringVar(&f.service.Name, "service", "", "register this candidate as an instance of service `NAME` on the local agent, tagged leader while it leads --resource and standby otherwise (leader.NAME.service.consul names the leader); deregistered on exit")
	fs.IntVar(&f.service.Port, "service-port", 0, "`PORT` of the --service instance")
	fs.StringVar(&f.service.Address, "service-address", "", "`ADDRESS` of the --service instance (default the agent's)")
}

// defaultCheckTTL is the check TTL that run --fast-failover chooses when
// every other flag is at its default, for the help.
func defaultCheckTTL() time.Duration {
	f := runFlags{ttl: actors.DefaultSessionTTL, lockDelay: actors.DefaultLockDelay, killGrace: defaultKillGrace, failover: true}
	opts, _ := f.options()
	return opts.FastFailoverTTL
}

// choices are the defaults that run adapted to the other flags, for the log.
type choices struct {
	killGraceLowered bool // the default kill grace did not fit
	checkTTLChosen   bool // --fast-failover without --fast-failover-ttl
}

// options are the engine's options for these flags. Defaults the user did
// not set give way to the values that were set: the kill grace is lowered to
// fit the fence window, and the fast-failover check's TTL is chosen to fit
// the kill grace. Values set on the command line are taken as given; Validate
// refuses those that do not fit.
func (f *runFlags) options() (actors.Options, choices) {
	opts := f.commonFlags.options()
	opts.SessionTTL = f.ttl
	opts.LockDelay = f.lockDelay
	opts.HealthCheckID = f.healthCheck
	opts.CandidateID = f.id // empty: the engine's default
	// The engine must step down early enough for the command to be gone,
	// kill grace included, by the time Consul could let another candidate in.
	opts.SelfFenceMargin = f.killGrace
	opts.FastFailover = f.failover
	opts.FastFailoverTTL = f.failoverTTL
	opts.Priority = f.priority
	opts.Preempt = f.preempt
	opts.ReleaseOnly = f.releaseOnly
	if f.service.Name != "" {
		opts.Service = f.service
		if actors.ValidateResource(f.resource) == nil { // else --resource's own error says why
			opts.Service.Resource = f.resource
		}
	}

	var chosen choices
	chooseCheckTTL := f.failover && f.failoverTTL == 0
	if chooseCheckTTL {
		// The most room for the kill grace, until it is known.
		opts.FastFailoverTTL = opts.SessionTTL
	}
	if !f.set["kill-grace"] {
		if limit := opts.Timing().MaxSelfFenceMargin; opts.SelfFenceMargin > limit {
			opts.SelfFenceMargin, chosen.killGraceLowered = limit, true
		}
	}
	if chooseCheckTTL {
		opts.FastFailoverTTL, chosen.checkTTLChosen = shortestCheckTTL(opts), true
	}
	// A planned end of a term waits for the command, which has the kill
	// grace to exit.
	opts.DrainTimeout = max(opts.SelfFenceMargin, 0) + drainSlack
	return opts, chosen
}

// shortestCheckTTL is the shortest fast-failover check TTL, a whole second
// from minAutoCheckTTL on, with which Validate accepts opts' timing; at most
// SessionTTL, which it is when nothing shorter fits.
func shortestCheckTTL(opts actors.Options) time.Duration {
	// Only the timing: the other options have nothing to do with the choice.
	timing := actors.DefaultOptions()
	timing.SessionTTL, timing.LockDelay, timing.SelfFenceMargin = opts.SessionTTL, opts.LockDelay, opts.SelfFenceMargin
	timing.FastFailover, timing.FastFailoverTTL = true, opts.SessionTTL
	if timing.Validate() != nil {
		return opts.SessionTTL // no check TTL helps; Validate says why
	}
	for ttl := min(minAutoCheckTTL, opts.SessionTTL); ttl < opts.SessionTTL; ttl = ttl.Truncate(time.Second) + time.Second {
		timing.FastFailoverTTL = ttl
		if timing.Validate() == nil {
			return ttl
		}
	}
	return opts.SessionTTL
}

// parseRun parses run's command line into its flags and the engine's
// options, and checks both before anything talks to Consul.
func parseRun(env *cli, args []string) (*runFlags, actors.Options, choices, error) {
	f := &runFlags{set: map[string]bool{}}
	fs := newFlagSet("run")
	f.register(fs)
	if err := parseFlags(env, fs, runSynopsis+"\n"+runHelp, args); err != nil {
		return nil, actors.Options{}, choices{}, err
	}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	f.command = fs.Args()
	opts, chosen := f.options()
	optionErrs := flagErrors(opts.Validate())
	if chosen.checkTTLChosen {
		// The check TTL is run's choice, made to fit: if it does not, an
		// error about --ttl or the fence window says why, and one about
		// --fast-failover-ttl would blame a flag the user did not set.
		optionErrs = slices.DeleteFunc(optionErrs, func(err error) bool { return strings.Contains(err.Error(), "--fast-failover-ttl") })
	}
	if err := f.check(optionErrs, f.runOnly()...); err != nil {
		return nil, actors.Options{}, choices{}, err
	}
	return f, opts, chosen, nil
}

// runOnly checks what run has and the engine's options do not.
func (f *runFlags) runOnly() []error {
	var errs []error
	if len(f.command) == 0 {
		errs = append(errs, errors.New("COMMAND is missing: "+runSynopsis))
	} else if _, err := exec.LookPath(f.command[0]); err != nil {
		errs = append(errs, fmt.Errorf("COMMAND %q: %v", f.command[0], err))
	}
	if f.set["fast-failover-ttl"] && !f.failover {
		errs = append(errs, errors.New("--fast-failover-ttl is set without --fast-failover"))
	}
	for _, flag := range []string{"service-port", "service-address"} {
		if f.set[flag] && f.service.Name == "" {
			errs = append(errs, fmt.Errorf("--%s is set without --service", flag))
		}
	}
	if f.timeout < 0 {
		errs = append(errs, fmt.Errorf("--timeout is %s; it must not be negative (0s: wait forever)", f.timeout))
	}
	if f.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(f.metricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-addr %q: want host:port: %v", f.metricsAddr, err))
		}
	}
	return errs
}

func runCommand(env *cli, args []string) error {
	f, opts, chosen, err := parseRun(env, args)
	if err != nil {
		return err
	}
	// The engine names the candidate (and the resource) in its own logs.
	engineLogger := f.newLogger(env.stderr)
	defer func() { _ = engineLogger.Sync() }()
	logger := engineLogger.With(zap.String("resource", f.resource))
	timing := opts.Timing()
	if chosen.killGraceLowered {
		fields := []zap.Field{zap.Duration("kill_grace", opts.SelfFenceMargin), zap.Duration("default", defaultKillGrace),
			zap.Duration("fence_window", timing.FenceWindow)}
		if f.failover {
			fields = append(fields, zap.Duration("check_ttl", timing.CheckTTL))
		}
		logger.Info("--kill-grace is not set and its default does not fit: using the most that fits", fields...)
	}
	if chosen.checkTTLChosen {
		logger.Info("--fast-failover-ttl is not set: using the shortest check TTL that leaves room for --kill-grace",
			zap.Duration("check_ttl", timing.CheckTTL), zap.Duration("kill_grace", opts.SelfFenceMargin))
	}
	if opts.LockDelay < opts.SelfFenceMargin {
		logger.Warn("--lock-delay is shorter than --kill-grace: if Consul invalidates this leader's session (an operator, a failed node or health check), another candidate may start its command before this one's is killed",
			zap.Duration("lock_delay", opts.LockDelay), zap.Duration("kill_grace", opts.SelfFenceMargin))
	}

	client, err := f.client()
	if err != nil {
		return err
	}
	defer client.Close()
	opts.Backend = client
	opts.Logger = engineLogger

	stop := &stopper{}
	ctx, stopNotify := stop.notify()
	defer stopNotify()

	metrics, err := newRunMetrics(f.resource, timing)
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
	r := &runner{flags: f, killGrace: opts.SelfFenceMargin, election: election, logger: logger, metrics: metrics,
		launcher: &launcher{argv: f.command, logger: logger}, stopper: stop}
	return r.run(ctx)
}

// runner runs the command during each term of leadership.
type runner struct {
	flags     *runFlags
	killGrace time.Duration // --kill-grace, or the default lowered to fit
	election  *consulelect.Election
	logger    *zap.Logger
	metrics   *runMetrics
	// launcher starts each term's command, prepared ahead of the term.
	launcher *launcher
	// ending is done once run is to end (a stop signal): a term stops its
	// command at once, without waiting for the engine to end the term.
	ending  context.Context
	stopper *stopper
}

// stopper turns the stop signals into the end of run. The command of a term
// gets its SIGTERM from the goroutine that received the signal, before
// anything else hears of it; then run's context is cancelled, and the term
// and the engine end as for any planned end (the release waits for the
// command to be gone).
type stopper struct {
	mu      sync.Mutex
	stopped bool
	current *child // the term's command, while it runs
}

// notify returns a context cancelled by the first stop signal.
func (s *stopper) notify() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, stopSignals...)
	go func() {
		select {
		case <-signals:
			s.mu.Lock()
			s.stopped = true
			if s.current != nil {
				s.current.sigterm()
			}
			s.mu.Unlock()
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(signals)
		cancel()
	}
}

// running records the term's command (nil once it has ended).
func (s *stopper) running(c *child) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current = c
	if c != nil && s.stopped {
		c.sigterm() // the signal came while it was starting
	}
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

	err := r.lead(ctx)

	r.logger.Info("releasing the lock and destroying the session")
	stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	if stopErr := r.election.Stop(stopCtx); stopErr != nil {
		r.logger.Warn("could not stop cleanly; the session expires after its TTL", zap.Error(stopErr))
	}
	cancel()
	<-eventsDone
	return err
}

// lead campaigns and runs the command in each term of leadership, through
// Election.Run: a planned end of a term (a switchover, a preemption, ctx
// done) releases the lock only once the command has stopped; a lost term
// stops it at once. Until the first command starts, --timeout bounds the
// wait.
func (r *runner) lead(ctx context.Context) error {
	r.ending = ctx
	r.launcher.prepare()
	defer r.launcher.close()
	campaign, giveUp := context.WithCancel(ctx)
	defer giveUp()
	var (
		mu            sync.Mutex
		led, timedOut bool
	)
	if r.flags.timeout > 0 {
		timer := time.AfterFunc(r.flags.timeout, func() {
			mu.Lock()
			defer mu.Unlock()
			if !led {
				timedOut = true
				giveUp()
			}
		})
		defer timer.Stop()
	}
	err := r.election.Run(campaign, r.flags.resource, func(term context.Context, lead *consulelect.Leadership) error {
		mu.Lock()
		start := !timedOut && term.Err() == nil
		led = led || start
		mu.Unlock()
		if !start {
			return nil // lost before we could start, or too late
		}
		return r.term(term, lead)
	})
	mu.Lock()
	defer mu.Unlock()
	if timedOut && ctx.Err() == nil {
		return fmt.Errorf("did not become leader of %s within %s", r.flags.resource, r.flags.timeout)
	}
	return r.stopped(ctx, err)
}

// term runs the command during one term: until the term ends, or run is
// to end (then it stops the command and returns nil), or the command exits
// on its own (then it returns the command's exit code as an exitCodeError,
// and Run releases).
//
// On a stop signal the command is stopped at once, while the engine ends
// the term: either way the lock is released only once term has returned,
// after the command has stopped.
func (r *runner) term(ctx context.Context, lead *consulelect.Leadership) error {
	child, err := r.startCommand(lead)
	if err != nil {
		return err
	}
	r.stopper.running(child)
	defer r.stopper.running(nil)
	select {
	case <-ctx.Done():
		lost, _ := lead.Lost()
		r.logger.Info("the term ended; stopping the command", zap.String("reason", string(lost.Reason)),
			zap.Uint64("fencing_token", lead.FencingToken))
	case <-r.ending.Done():
		r.logger.Info("stopping: stopping the command before releasing the lock", zap.Uint64("fencing_token", lead.FencingToken))
	case <-child.done:
		r.metrics.commandRunning.Set(0)
		r.logger.Info("the command exited; releasing the lock", zap.Int("exit_code", child.exitCode))
		return &exitCodeError{code: child.exitCode}
	}
	r.stopCommand(child, lead)
	if r.ending.Err() == nil {
		r.launcher.prepare() // for the next term
	}
	return nil
}

// stopped says why lead ended: a signal (exit 0) or a start-up error.
func (r *runner) stopped(ctx context.Context, err error) error {
	var startup *startupError
	if errors.As(context.Cause(ctx), &startup) {
		return startup
	}
	if ctx.Err() != nil {
		return nil // one of stopSignals
	}
	return err
}

func (r *runner) startCommand(lead *consulelect.Leadership) (*child, error) {
	vars := []string{
		envResource + "=" + r.flags.resource,
		envID + "=" + lead.CandidateID,
		envSession + "=" + lead.Session,
		envKey + "=" + r.flags.key(),
		envFencingToken + "=" + strconv.FormatUint(lead.FencingToken, 10),
	}
	child, err := r.launcher.start(vars)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", r.flags.command[0], err)
	}
	r.metrics.commandRunning.Set(1)
	r.metrics.commandStarts.Inc()
	r.logger.Info("leading; command started", zap.String("candidate", lead.CandidateID), zap.Int("pid", child.pid),
		zap.Uint64("fencing_token", lead.FencingToken))
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
	c.stop(r.killGrace, killBy)
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
