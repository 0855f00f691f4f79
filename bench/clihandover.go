package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/excalibur/consul-elect/consul/reference"
)

// CLIConfig sizes figure 1b, the CLI handover.
type CLIConfig struct {
	Handovers int // measured per implementation
	Warmup    int // run first, not measured
	// The flags both CLIs get.
	TTL       time.Duration
	LockDelay time.Duration
	KillGrace time.Duration
	// Settle is the pause between a standby being ready and the SIGTERM to
	// the leader: the standby's blocking query is in place, and the other
	// implementation's processes have quieted down.
	Settle time.Duration
}

// DefaultCLIConfig is the configuration of the documented runs.
func DefaultCLIConfig() CLIConfig {
	return CLIConfig{Handovers: 30, Warmup: 2, TTL: 3 * time.Second, KillGrace: 300 * time.Millisecond, Settle: 500 * time.Millisecond}
}

// TinyCLIConfig is for the smoke test.
func TinyCLIConfig() CLIConfig {
	c := DefaultCLIConfig()
	c.Handovers, c.Warmup, c.Settle = 2, 1, 200*time.Millisecond
	return c
}

// The leader's command on both sides: a shell loop that says when it has
// started (the harness times the line). SIGTERM to its process group ends it
// at once: no trap, so the shell does not wait for its sleep.
const cliChildScript = `echo started; while :; do sleep 1; done`

// Bounds of figure 1b's waits.
const (
	cliBuildTimeout = 5 * time.Minute
	cliExitTimeout  = 15 * time.Second
)

// CLIHandover is figure 1b: the same handover as figure 1, through the
// command lines. Two `consul-elect run` processes, and two of
// bench/cmd/locklock (api.Lock with the same contract: stop the command,
// then Unlock), run the same shell loop with the same flags. The time is
// from the SIGTERM to the leading process until the standby's command has
// written its first line. After each handover the stopped process is
// replaced by a new standby. The two implementations take turns, one
// handover each, so that both see the same load.
func CLIHandover(ctx context.Context, env *Env, cfg CLIConfig) Figure {
	f := Figure{Name: "Figure 1b: CLI handover"}
	dir, err := os.MkdirTemp("", "electbench-cli-")
	if err != nil {
		f.Err = err
		return f
	}
	defer os.RemoveAll(dir)
	env.logf("figure 1b: building consul-elect and locklock")
	bins, err := buildCLIs(ctx, dir)
	if err != nil {
		f.Err = err
		return f
	}
	key := env.prefix("cli-handover")
	impls := []*cliPair{
		{name: "consul-elect", start: func(id string) []string {
			return []string{bins.elect, "run", "--address", env.URL, "--prefix", key, "--resource", "r", "--id", id,
				"--ttl", cfg.TTL.String(), "--lock-delay", cfg.LockDelay.String(), "--kill-grace", cfg.KillGrace.String(),
				"--log-format", "json", "--", "sh", "-c", cliChildScript}
		}, isLeader: `"msg":"leading; command started"`, stopped: `"msg":"command stopped"`, acquired: `"msg":"leadership acquired"`,
			isStandbyOf: func(leader string) []string { return []string{`"msg":"leader changed"`, `"leader":"` + leader + `"`} }},
		{name: "api.Lock", start: func(string) []string {
			return []string{bins.lock, "--address", env.URL, "--key", key + "-apilock/r",
				"--ttl", cfg.TTL.String(), "--lock-delay", cfg.LockDelay.String(), "--kill-grace", cfg.KillGrace.String(),
				"--", "sh", "-c", cliChildScript}
		}, isLeader: "locklock: leading", stopped: "locklock: command stopped", acquired: "locklock: leading",
			isStandbyOf: func(string) []string { return []string{"locklock: waiting for the lock"} }},
	}
	for _, p := range impls {
		p.env, p.cfg = env, cfg
		defer p.close()
		if err := p.begin(ctx); err != nil {
			f.Err = fmt.Errorf("%s: %w", p.name, err)
			return f
		}
	}
	env.logf("figure 1b: %d handovers each, taking turns", cfg.Warmup+cfg.Handovers)
	for i := 0; i < cfg.Warmup+cfg.Handovers && f.Err == nil; i++ {
		for _, p := range impls {
			if err := ctx.Err(); err != nil {
				f.Err = err
				break
			}
			if err := p.handover(ctx, i >= cfg.Warmup); err != nil {
				f.Err = fmt.Errorf("%s, handover %d: %w", p.name, i, err)
				break
			}
		}
	}
	elect, ref := impls[0], impls[1]
	goal := "≤ api.Lock's"
	f.Rows = append(f.Rows,
		Row{Figure: "1b CLI handover", Measure: fmt.Sprintf("p50 (n = %d / %d)", len(elect.total), len(ref.total)),
			Elect: pctl(elect.total, 50), Ref: pctl(ref.total, 50), Goal: goal},
		Row{Figure: "1b CLI handover", Measure: "p99", Elect: pctl(elect.total, 99), Ref: pctl(ref.total, 99), Goal: goal},
	)
	f.notef("from SIGTERM to the leading process until the standby's command printed its first line; both run `sh -c %q` with --ttl %s, --lock-delay %s, --kill-grace %s; the implementations take turns",
		cliChildScript, cfg.TTL, cfg.LockDelay, cfg.KillGrace)
	for _, p := range impls {
		f.notef("%s: min %s, median %s, max %s over %d; where the time goes (p50 / p99 from SIGTERM): old command stopped %s / %s; new leader says it holds the lock %s / %s; its command's first line %s / %s",
			p.name, p.total.Min(), p.total.Percentile(50), p.total.Max(), len(p.total),
			p.stoppedAt.Percentile(50), p.stoppedAt.Percentile(99), p.acquiredAt.Percentile(50), p.acquiredAt.Percentile(99),
			p.total.Percentile(50), p.total.Percentile(99))
	}
	f.notef("api.Lock's side is bench/cmd/locklock: Lock(), then the command started directly (process group, Pdeathsig, no shim); on SIGTERM the command is stopped (SIGTERM to the group, SIGKILL after the grace), then Unlock(); a lock-delay of 0 is sent as %s, the least api.Lock can ask for",
		reference.MinLockDelay)
	return f
}

type cliBinaries struct{ elect, lock string }

// buildCLIs builds consul-elect and locklock into dir, without -race.
func buildCLIs(ctx context.Context, dir string) (cliBinaries, error) {
	ctx, cancel := context.WithTimeout(ctx, cliBuildTimeout)
	defer cancel()
	bins := cliBinaries{elect: filepath.Join(dir, "consul-elect"), lock: filepath.Join(dir, "locklock")}
	for pkg, out := range map[string]string{
		"github.com/excalibur/consul-elect/cmd/consul-elect":   bins.elect,
		"github.com/excalibur/consul-elect/bench/cmd/locklock": bins.lock,
	} {
		if b, err := exec.CommandContext(ctx, "go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			return bins, fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return bins, nil
}

// cliPair is one implementation's leader and standby processes, and what
// its handovers measured.
type cliPair struct {
	name     string
	env      *Env
	cfg      CLIConfig
	start    func(id string) []string // the command line of a new candidate
	isLeader string                   // a stderr line that says a process leads
	stopped  string                   // a stderr line: the old leader's command has stopped
	acquired string                   // a stderr line: the new leader holds the lock
	// isStandbyOf is what a stderr line that says a process stands by for
	// leader contains.
	isStandbyOf func(leader string) []string

	seq             int
	leader, standby *cliProc
	procs           []*cliProc

	total, stoppedAt, acquiredAt Sample
}

// begin starts the first leader and its standby.
func (p *cliPair) begin(ctx context.Context) error {
	first, err := p.spawn()
	if err != nil {
		return err
	}
	if _, err := first.awaitStdout(ctx, eventTimeout, "started"); err != nil {
		return err
	}
	p.leader = first
	return p.newStandby(ctx)
}

func (p *cliPair) spawn() (*cliProc, error) {
	p.seq++
	id := fmt.Sprintf("cli-%d", p.seq)
	c, err := startCLIProc(id, p.start(id), p.env)
	if err != nil {
		return nil, err
	}
	p.procs = append(p.procs, c)
	return c, nil
}

// newStandby starts a process and waits until it stands by for the leader.
func (p *cliPair) newStandby(ctx context.Context) error {
	s, err := p.spawn()
	if err != nil {
		return err
	}
	if _, err := s.awaitStderr(ctx, eventTimeout, p.isStandbyOf(p.leader.id)...); err != nil {
		return err
	}
	p.standby = s
	return nil
}

// handover stops the leader and times the standby's takeover; then a new
// standby replaces the stopped process.
func (p *cliPair) handover(ctx context.Context, measured bool) error {
	select {
	case <-time.After(p.cfg.Settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	old, next := p.leader, p.standby
	t0 := time.Now()
	if err := old.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	started, err := next.awaitStdout(ctx, eventTimeout, "started")
	if err != nil {
		return err
	}
	if err := old.awaitExit(cliExitTimeout); err != nil {
		return err
	}
	stoppedAt, _ := old.stderrAt(p.stopped)
	acquiredAt, _ := next.stderrAt(p.acquired)
	p.env.logf("figure 1b: %s: %s → %s: command stopped +%s, lock held +%s, command started +%s",
		p.name, old.id, next.id, since(stoppedAt, t0), since(acquiredAt, t0), started.Sub(t0))
	if measured {
		p.total = append(p.total, started.Sub(t0))
		if !stoppedAt.IsZero() {
			p.stoppedAt = append(p.stoppedAt, stoppedAt.Sub(t0))
		}
		if !acquiredAt.IsZero() {
			p.acquiredAt = append(p.acquiredAt, acquiredAt.Sub(t0))
		}
	}
	p.leader = next
	return p.newStandby(ctx)
}

// since is at − t0, or "?" when at is unknown.
func since(at, t0 time.Time) string {
	if at.IsZero() {
		return "?"
	}
	return at.Sub(t0).String()
}

// close stops every process still running.
func (p *cliPair) close() {
	for _, c := range p.procs {
		c.stop()
	}
}

// cliProc is one CLI process. Its stdout and stderr lines are read as they
// come, each with the time it was read.
type cliProc struct {
	id      string
	cmd     *exec.Cmd
	mu      sync.Mutex
	lines   []cliLine
	update  chan struct{} // closed and replaced when a line arrives
	exited  chan struct{}
	readers sync.WaitGroup
}

type cliLine struct {
	stderr bool
	text   string
	at     time.Time
}

func startCLIProc(id string, argv []string, env *Env) (*cliProc, error) {
	c := &cliProc{id: id, update: make(chan struct{}), exited: make(chan struct{})}
	c.cmd = exec.Command(argv[0], argv[1:]...)
	// If the harness dies, so does the candidate (and consul-elect's shim
	// takes its command along).
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	c.readers.Add(2)
	go c.read(stdout, false)
	go c.read(stderr, true)
	go func() {
		c.readers.Wait()
		_ = c.cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func (c *cliProc) read(r io.Reader, stderr bool) {
	defer c.readers.Done()
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 64*1024), 1<<20)
	for scanner.Scan() {
		at := time.Now()
		c.mu.Lock()
		c.lines = append(c.lines, cliLine{stderr: stderr, text: scanner.Text(), at: at})
		close(c.update)
		c.update = make(chan struct{})
		c.mu.Unlock()
	}
}

// find returns the time of the first line (of stderr or stdout) containing
// every one of parts, from line from on; else how many lines there are, and
// a channel closed when the next one arrives.
func (c *cliProc) find(stderr bool, parts []string, from int) (time.Time, int, bool, chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := from; i < len(c.lines); i++ {
		if l := c.lines[i]; l.stderr == stderr && containsAll(l.text, parts) {
			return l.at, i, true, c.update
		}
	}
	return time.Time{}, len(c.lines), false, c.update
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func (c *cliProc) awaitStdout(ctx context.Context, timeout time.Duration, parts ...string) (time.Time, error) {
	return c.await(ctx, false, timeout, parts)
}

func (c *cliProc) awaitStderr(ctx context.Context, timeout time.Duration, parts ...string) (time.Time, error) {
	return c.await(ctx, true, timeout, parts)
}

func (c *cliProc) await(ctx context.Context, stderr bool, timeout time.Duration, parts []string) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	from := 0
	for {
		at, n, ok, update := c.find(stderr, parts, from)
		if ok {
			return at, nil
		}
		from = n
		select {
		case <-update:
		case <-c.exited:
			if at, _, ok, _ := c.find(stderr, parts, from); ok {
				return at, nil
			}
			return time.Time{}, fmt.Errorf("%s exited (%v) before %q; its last lines:\n%s", c.id, c.cmd.ProcessState, parts, c.tail(20))
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s: no %q within %s; its last lines:\n%s", c.id, parts, timeout, c.tail(20))
		}
	}
}

// stderrAt is when a stderr line containing s was read, if one was.
func (c *cliProc) stderrAt(s string) (time.Time, bool) {
	at, _, ok, _ := c.find(true, []string{s}, 0)
	return at, ok
}

func (c *cliProc) tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, l := range c.lines[max(0, len(c.lines)-n):] {
		fmt.Fprintf(&b, "  %s\n", l.text)
	}
	return b.String()
}

func (c *cliProc) awaitExit(timeout time.Duration) error {
	select {
	case <-c.exited:
		if !c.cmd.ProcessState.Success() {
			return fmt.Errorf("%s exited with %v after SIGTERM; its last lines:\n%s", c.id, c.cmd.ProcessState, c.tail(20))
		}
		return nil
	case <-time.After(timeout):
		return errors.New(c.id + " did not exit after SIGTERM within " + timeout.String())
	}
}

// stop ends the process: SIGTERM, then SIGKILL past the bound.
func (c *cliProc) stop() {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(cliExitTimeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}
