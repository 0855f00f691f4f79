//go:build linux

package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/internal/devconsul"
	"github.com/excalibur/consul-elect/internal/faultproxy"
)

var (
	seedFlag        = flag.Uint64("chaos.seed", 0, "seed of the fault schedule (0: from the clock; also $CHAOS_SEED); printed, so a run can be replayed")
	transitionsFlag = flag.Int("chaos.transitions", 0, "forced transitions to reach (0: the test's own number)")
	keepFlag        = flag.Bool("chaos.keep", false, "keep the run's directory: the leadership log, the store and each candidate's output")
	reportFlag      = flag.String("chaos.report", "", "also write the summary and every fault's figures to this file")
	raceFlag        = flag.String("chaos.race", "auto", "build consul-elect with the race detector: on, off, or auto (when this test is)")
)

// config is what a run's candidates are started with.
type config struct {
	bounds Bounds // --ttl, --lock-delay, --kill-grace
	// slowToStop names the candidates whose command ignores SIGTERM and
	// runs until consul-elect's SIGKILL, a kill grace later.
	slowToStop map[string]bool
	// fastFailover names the candidates run with --fast-failover
	// --fast-failover-ttl fastFailoverTTL.
	fastFailover map[string]bool
	// api names the candidates that are Go programs on the root package's
	// Election.Run (chaos/cmd/apicandidate) instead of `consul-elect run`.
	api map[string]bool
	// servers, when not 0, runs a datacenter of that many Consul servers
	// and one client agent, which the candidates talk to (TestChaosCluster);
	// 0 runs one server agent.
	servers int
	// kinds are the faults the run draws from; nil: FaultKinds.
	kinds []FaultKind
}

// faultKinds are the kinds the run draws from.
func (cfg config) faultKinds() []FaultKind {
	if cfg.kinds == nil {
		return FaultKinds
	}
	return cfg.kinds
}

// fastFailoverTTL is the fast-failover candidates' check TTL: a killed
// leader among them loses its session after 2s instead of up to 2×TTL.
const fastFailoverTTL = 2 * time.Second

// runBounds are the chaos run's flags: --ttl 3s --lock-delay 1500ms
// --kill-grace 300ms. The fence window is min(TTL, lock-delay) = 1.5s; the
// CLI's margin is 1.5s/10 + 300ms, so a leader that cannot renew steps down
// 1.05s after its last renewal was sent and has its command killed by 1.35s,
// before Consul could hand the key over. When Consul invalidates the session
// first (destroyed, a failed check), lock-delay keeps others out for 1.5s,
// which covers the kill grace (lock-delay ≥ kill grace).
var runBounds = Bounds{TTL: 3 * time.Second, LockDelay: 1500 * time.Millisecond, KillGrace: 300 * time.Millisecond, Margin: time.Second}

// runConfig is the chaos run's: two of the five commands are slow to stop,
// so that the kill grace is used up whenever one of them leads; c3 runs with
// --fast-failover; c5 is a Go program on Election.Run.
var runConfig = config{bounds: runBounds, slowToStop: map[string]bool{"c2": true, "c4": true},
	fastFailover: map[string]bool{"c3": true}, api: map[string]bool{"c5": true}}

const (
	prefix     = "chaos"
	resource   = "r"
	candidates = 5
	beatEvery  = 2 * time.Millisecond
	// liveWithin: a command that wrote a line this recently is alive; the
	// commands beat every 2ms, so this only absorbs a loaded machine.
	liveWithin = 300 * time.Millisecond
	// recoverySlack is added to each fault's bound when waiting for a new
	// leader: the wait is for liveness, generous on purpose.
	recoverySlack = 30 * time.Second
	// livenessSlack is how far past its bound a failover may come before
	// the test fails (the figures report the real values).
	livenessSlack = 10 * time.Second
	// staleLifetimeBound is a generous bound for a stale command after
	// consul-elect resumes (the goal, reported, is 100ms).
	staleLifetimeBound = 2 * time.Second
)

func buildBinaries(t *testing.T) (consulElect, child string) {
	t.Helper()
	binaries.once.Do(func() {
		binaries.dir, binaries.err = os.MkdirTemp("", "consul-elect-chaos-bin-")
		if binaries.err != nil {
			return
		}
		race := raceEnabled
		switch *raceFlag {
		case "on":
			race = true
		case "off":
			race = false
		}
		binaries.consulElect = filepath.Join(binaries.dir, "consul-elect")
		binaries.child = filepath.Join(binaries.dir, "chaoschild")
		binaries.api = filepath.Join(binaries.dir, "apicandidate")
		build := func(out string) []string {
			if race {
				return []string{"build", "-race", "-o", out}
			}
			return []string{"build", "-o", out}
		}
		for _, build := range [][]string{
			append(build(binaries.consulElect), "github.com/excalibur/consul-elect/cmd/consul-elect"),
			{"build", "-o", binaries.child, "github.com/excalibur/consul-elect/chaos/cmd/chaoschild"},
			append(build(binaries.api), "github.com/excalibur/consul-elect/chaos/cmd/apicandidate"),
		} {
			if out, err := exec.Command("go", build...).CombinedOutput(); err != nil {
				binaries.err = fmt.Errorf("go %s: %v\n%s", strings.Join(build, " "), err, out)
				return
			}
		}
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.consulElect, binaries.child
}

// seed is the -chaos.seed flag, else $CHAOS_SEED, else the clock.
func seed(t *testing.T) uint64 {
	t.Helper()
	if *seedFlag != 0 {
		return *seedFlag
	}
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED %q: %v", s, err)
		}
		return v
	}
	return uint64(time.Now().UnixNano())
}

// planned is one fault of the schedule, drawn from the seed before the run
// so that the schedule does not depend on timing: a replay injects the same
// faults with the same parameters, in the same order.
type planned struct {
	kind    FaultKind
	hold    time.Duration // freeze, cut, latency: how long
	latency time.Duration // latency: added each way
	mode    CutMode
	settle  time.Duration // the leader leads this long before the fault
	// HTTP bursts: short ones last shortFrac of the leader's keep point,
	// long ones longFactor times its step-down point (see burstLength).
	short                 bool
	shortFrac, longFactor float64
	// pick chooses the follower whose session is destroyed, among the
	// followers in id order.
	pick int
	// slowed: the switchover runs while the leader's link is slowed by a
	// quarter of latency each way.
	slowed bool
}

// plan draws n faults: every kind once in a shuffled order, again and again,
// so that even a short run meets each kind. Freezes and cuts last from just
// over the TTL to past 2×TTL + lock-delay (when Consul has let another
// candidate in); latency spikes are 50–700ms each way for 2–6s; HTTP bursts
// are short or long, as often as not.
func plan(seed uint64, n int, b Bounds) []planned { return planKinds(seed, n, b, FaultKinds) }

// planKinds is plan drawing from kinds.
func planKinds(seed uint64, n int, b Bounds, kinds []FaultKind) []planned {
	rng := rand.New(rand.NewPCG(seed, 0x636f6e73756c))
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	var out []planned
	for len(out) < n {
		for _, i := range rng.Perm(len(kinds)) {
			p := planned{kind: kinds[i]}
			// Every fault draws every parameter, used or not, so that
			// changing how one kind uses them leaves the rest of the
			// schedule as it was.
			hold := between(b.TTL+500*time.Millisecond, 2*b.TTL+b.LockDelay+2*time.Second)
			latencyHold := between(2*time.Second, 6*time.Second)
			p.latency = between(50*time.Millisecond, 700*time.Millisecond)
			p.mode = CutMode(rng.IntN(2))
			p.settle = between(300*time.Millisecond, 1500*time.Millisecond)
			p.short = rng.IntN(2) == 0
			p.shortFrac = 0.3 + 0.5*rng.Float64()
			p.longFactor = 1.2 + 1.8*rng.Float64()
			p.pick = rng.IntN(candidates - 1)
			p.slowed = rng.IntN(2) == 0
			p.hold = hold
			if p.kind == LatencySpike {
				p.hold = latencyHold
			}
			out = append(out, p)
		}
	}
	return out[:n]
}

func (p planned) params() string {
	switch p.kind {
	case FreezeLeader, FreezeElect:
		return p.hold.Round(time.Millisecond).String()
	case CutLeader:
		return p.hold.Round(time.Millisecond).String() + " " + p.mode.String()
	case LatencySpike:
		return fmt.Sprintf("+%s each way for %s", p.latency.Round(time.Millisecond), p.hold.Round(time.Millisecond))
	case Switchover:
		if p.slowed {
			return fmt.Sprintf("the leader's link +%s each way", (p.latency / 4).Round(time.Millisecond))
		}
	case HTTP500, HTTP429:
		if p.short {
			return fmt.Sprintf("short: %.0f%% of the keep point", 100*p.shortFrac)
		}
		return fmt.Sprintf("long: %.1f× the step-down point", p.longFactor)
	}
	return ""
}

// keepPoint and stepDownPoint are, for a burst of error answers that
// begins with one of the leader's renewals, how long it may last with the
// leader keeping its term, and past how long the leader has surely stepped
// down. The renewal before the failed one was sent RenewEvery earlier and
// the leader steps down StepDownAfter after that one; after the burst, a
// retry (every RetryEvery) must still get through in time. With
// --fast-failover the check's own schedule applies too: its last update
// may have been sent up to CheckUpdateEvery before the burst.
func keepPoint(t actors.Timing) time.Duration {
	keep := t.StepDownAfter - t.RenewEvery - t.RetryEvery
	if t.CheckTTL > 0 {
		keep = min(keep, t.CheckStepDownAfter-t.CheckUpdateEvery-t.CheckRetryEvery)
	}
	return keep
}

func stepDownPoint(t actors.Timing) time.Duration {
	return max(t.StepDownAfter, t.CheckStepDownAfter)
}

// burstLength is the length of p's burst against a leader of timing t.
func (p planned) burstLength(t actors.Timing) time.Duration {
	if p.short {
		return time.Duration(p.shortFrac * float64(keepPoint(t)))
	}
	return time.Duration(p.longFactor * float64(stepDownPoint(t)))
}

// timing is the engine's timing for a candidate, computed from its flags as
// `consul-elect run` computes it (the Go candidate gets the same options).
func (c *cluster) timing(id string) actors.Timing {
	b := c.cfg.bounds
	opts := actors.DefaultOptions()
	opts.SessionTTL, opts.LockDelay, opts.SelfFenceMargin = b.TTL, b.LockDelay, b.KillGrace
	if c.cfg.fastFailover[id] {
		opts.FastFailover, opts.FastFailoverTTL = true, fastFailoverTTL
	}
	return opts.Timing()
}

// cluster is one run: a Consul agent and the candidates.
type cluster struct {
	t         *testing.T
	cfg       config
	seed      uint64
	dir       string
	marker    string // CHAOS_RUN=dir, in the environment of everything the run starts
	logPath   string
	storeDir  string
	agent     *devconsul.Agent   // the agent the candidates talk to
	consul    *devconsul.Cluster // its datacenter, when cfg.servers > 0
	http      *http.Client
	cands     []*candidate
	follower  *follower
	faults    []Fault
	startedAt time.Time

	mu       sync.Mutex
	injected map[int]int // the HTTP proxies' own error answers, by status
}

func newCluster(t *testing.T, cfg config, seed uint64) *cluster {
	t.Helper()
	consulElect, child := buildBinaries(t)
	dir, err := os.MkdirTemp("", "consul-elect-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, cfg: cfg, seed: seed, dir: dir, marker: "CHAOS_RUN=" + dir,
		logPath: filepath.Join(dir, "leaders.log"), storeDir: filepath.Join(dir, "store"),
		http:      &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 3 * time.Second},
		startedAt: time.Now(), injected: map[int]int{}}
	t.Logf("chaos seed %d (replay with -chaos.seed=%d); run directory %s", seed, seed, dir)
	// Cleanups run last to first: this one, registered first, runs after
	// the agent has stopped; killEverything, registered last, runs first.
	t.Cleanup(func() {
		if *keepFlag || t.Failed() {
			t.Logf("run directory kept: %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	if cfg.servers > 0 {
		c.startDatacenter() // consulfaults_test.go
	} else {
		// A server agent with a data directory, so that a restart keeps
		// the sessions and the lock.
		c.agent = devconsul.ForTest(t, devconsul.Config{DataDir: filepath.Join(dir, "consul")})
	}
	c.follower = &follower{path: c.logPath, terms: map[termKey]*liveTerm{}}
	for i := 1; i <= candidates; i++ {
		// candidate → TCP proxy (cut, latency) → HTTP proxy (error
		// answers, and a count of the agent's own) → agent.
		answers, err := faultproxy.Start(c.agent.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = answers.Close() })
		proxy, err := NewProxy(strings.TrimPrefix(answers.URL(), "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = proxy.Close() })
		id := fmt.Sprintf("c%d", i)
		cd := &candidate{c: c, id: id, proxy: proxy, answers: answers, binary: consulElect, child: child}
		if cfg.api[id] {
			cd.binary = binaries.api
		}
		c.cands = append(c.cands, cd)
		cd.start()
	}
	t.Cleanup(c.killEverything)
	return c
}

// killEverything SIGKILLs (and SIGCONTs, in case they were frozen) whatever
// the run started that is still alive: consul-elect processes, shims and
// commands, found by the run's marker. It is the backstop of t.Cleanup.
func (c *cluster) killEverything() {
	for _, cd := range c.cands {
		cd.mu.Lock()
		cd.expectExit = true
		cd.mu.Unlock()
	}
	for range 50 {
		left := markedProcesses(c.marker)
		if len(left) == 0 {
			break
		}
		for _, p := range left {
			signalAll(syscall.SIGKILL, p.pid)
			signalAll(syscall.SIGCONT, p.pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, cd := range c.cands {
		cd.wait(10 * time.Second)
	}
}

// candidate is one `consul-elect run` and its proxy; it is started again
// after a kill, with the same id.
type candidate struct {
	c             *cluster
	id            string
	proxy         *Proxy
	answers       *faultproxy.Proxy
	binary, child string // consul-elect and chaoschild, or apicandidate

	mu         sync.Mutex
	cmd        *exec.Cmd
	exited     chan struct{}
	expectExit bool // the harness is killing or stopping it
	starts     int
	faultsSeen int      // by the running process
	baseline   usage    // of the running process, sampled after its first fault
	unexpected []string // exits nobody asked for
}

func (cd *candidate) start() {
	cd.c.t.Helper()
	out, err := os.OpenFile(filepath.Join(cd.c.dir, cd.id+".out"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		cd.c.t.Fatal(err)
	}
	defer out.Close()
	cd.mu.Lock()
	defer cd.mu.Unlock()
	cd.starts++
	b := cd.c.cfg.bounds
	fmt.Fprintf(out, "=== %s start #%d at %s\n", cd.id, cd.starts, time.Now().Format(time.RFC3339Nano))
	var cmd *exec.Cmd
	switch {
	case cd.c.cfg.api[cd.id]:
		cmd = exec.Command(cd.binary, "-address", "http://"+cd.proxy.Addr(), "-prefix", prefix, "-resource", resource,
			"-id", cd.id, "-ttl", b.TTL.String(), "-lock-delay", b.LockDelay.String(), "-margin", b.KillGrace.String())
	default:
		args := []string{"run", "--address", "http://" + cd.proxy.Addr(), "--prefix", prefix, "--resource", resource,
			"--id", cd.id, "--ttl", b.TTL.String(), "--lock-delay", b.LockDelay.String(), "--kill-grace", b.KillGrace.String()}
		if cd.c.cfg.fastFailover[cd.id] {
			args = append(args, "--fast-failover", "--fast-failover-ttl", fastFailoverTTL.String())
		}
		cmd = exec.Command(cd.binary, append(args, "--", cd.child)...)
	}
	cmd.Env = append(os.Environ(), cd.c.marker, "CHAOS_LOG="+cd.c.logPath, "CHAOS_STORE="+cd.c.storeDir,
		"CHAOS_BEAT="+beatEvery.String(),
		// Race-enabled programs sleep a second on exit by default.
		"GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	if cd.c.cfg.slowToStop[cd.id] {
		cmd.Env = append(cmd.Env, "CHAOS_IGNORE_TERM=1")
	}
	// A file, not a pipe: nothing to copy, and the command's tree may hold
	// it open without holding up Wait.
	cmd.Stdout, cmd.Stderr = out, out
	// A process group of its own (the test's signals are not its), and
	// killed with the test binary if that dies before its cleanups run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		cd.c.t.Fatal(err)
	}
	exited := make(chan struct{})
	cd.cmd, cd.exited, cd.expectExit = cmd, exited, false
	cd.faultsSeen, cd.baseline = 0, usage{}
	go func() {
		err := cmd.Wait()
		cd.mu.Lock()
		if !cd.expectExit {
			cd.unexpected = append(cd.unexpected, fmt.Sprintf("%s exited on its own at %s: %v", cd.id, time.Now().Format("15:04:05.000"), err))
		}
		cd.mu.Unlock()
		close(exited)
	}()
}

// exitCode is the exit status of the consul-elect that last exited (-1: it
// was killed by a signal or has not exited).
func (cd *candidate) exitCode() int {
	cd.mu.Lock()
	defer cd.mu.Unlock()
	if cd.cmd.ProcessState == nil {
		return -1
	}
	return cd.cmd.ProcessState.ExitCode()
}

// sawFault counts a fault the running process lived through; after its
// first, its usage is the baseline a leak would grow from.
func (cd *candidate) sawFault() {
	pid := cd.pid()
	if pid == 0 {
		return
	}
	cd.mu.Lock()
	defer cd.mu.Unlock()
	cd.faultsSeen++
	if cd.faultsSeen == 1 {
		cd.baseline, _ = readUsage(pid)
	}
}

// pid is the running consul-elect's, 0 if it has exited.
func (cd *candidate) pid() int {
	cd.mu.Lock()
	defer cd.mu.Unlock()
	select {
	case <-cd.exited:
		return 0
	default:
		return cd.cmd.Process.Pid
	}
}

func (cd *candidate) running() bool { return cd.pid() != 0 }

// signal sends sig to consul-elect; an exit it causes is expected.
func (cd *candidate) signal(sig syscall.Signal) {
	cd.mu.Lock()
	defer cd.mu.Unlock()
	switch sig {
	case syscall.SIGKILL, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT:
		cd.expectExit = true
	}
	_ = cd.cmd.Process.Signal(sig)
}

// wait waits up to bound for consul-elect to exit.
func (cd *candidate) wait(bound time.Duration) bool {
	cd.mu.Lock()
	exited := cd.exited
	cd.mu.Unlock()
	if exited == nil {
		return true
	}
	select {
	case <-exited:
		return true
	case <-time.After(bound):
		return false
	}
}

// command is the leader's command (chaoschild) below consul-elect, if any,
// and the whole tree below consul-elect. A Go candidate is its own command.
func (cd *candidate) command() (command int, tree []procStat) {
	pid := cd.pid()
	if pid == 0 {
		return 0, nil
	}
	if cd.c.cfg.api[cd.id] {
		return pid, nil
	}
	tree = descendants(pid)
	for _, p := range tree {
		if p.comm == "chaoschild" {
			command = p.pid
		}
	}
	return command, tree
}

func (c *cluster) candidate(id string) *candidate {
	for _, cd := range c.cands {
		if cd.id == id {
			return cd
		}
	}
	return nil
}

// follower reads the leadership log as it grows.
type follower struct {
	path     string
	offset   int64
	terms    map[termKey]*liveTerm
	maxToken uint64
}

type liveTerm struct {
	id      string
	token   uint64
	last    time.Time
	stopped bool
}

func (f *follower) poll() error {
	file, err := os.Open(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer file.Close()
	if _, err := file.Seek(f.offset, io.SeekStart); err != nil {
		return err
	}
	data, err := io.ReadAll(file)
	if err != nil {
		return err
	}
	complete := data[:bytes.LastIndexByte(data, '\n')+1]
	f.offset += int64(len(complete))
	events, err := ParseEvents(complete)
	if err != nil {
		return err
	}
	for _, e := range events {
		k := termKey{e.ID, e.Token}
		t := f.terms[k]
		if t == nil {
			t = &liveTerm{id: e.ID, token: e.Token}
			f.terms[k] = t
		}
		t.last = maxTime(t.last, e.At)
		t.stopped = t.stopped || e.Kind == Stop
		f.maxToken = max(f.maxToken, e.Token)
	}
	return nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// live lists the terms whose command wrote a line within liveWithin.
func (f *follower) live() []*liveTerm {
	var out []*liveTerm
	now := time.Now()
	for _, t := range f.terms {
		if !t.stopped && now.Sub(t.last) < liveWithin {
			out = append(out, t)
		}
	}
	return out
}

// holder is who holds the lock key, as Consul says.
type holder struct {
	id, session string
	modifyIndex uint64
}

func (c *cluster) holder() (holder, error) {
	resp, err := c.http.Get(c.agent.URL() + "/v1/kv/" + prefix + "/" + resource)
	if err != nil {
		return holder{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return holder{}, nil
	}
	if resp.StatusCode != http.StatusOK {
		return holder{}, fmt.Errorf("GET the lock key: %s", resp.Status)
	}
	var entries []struct {
		Session     string
		Value       []byte
		ModifyIndex uint64
	}
	if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil || len(entries) != 1 {
		return holder{}, fmt.Errorf("the lock key: %d entries, %v", len(entries), err)
	}
	var value struct {
		CandidateID string `json:"candidate_id"`
	}
	_ = json.Unmarshal(entries[0].Value, &value)
	if entries[0].Session == "" {
		return holder{}, nil
	}
	return holder{id: value.CandidateID, session: entries[0].Session, modifyIndex: entries[0].ModifyIndex}, nil
}

// leader is a steady leader: Consul's lock holder, whose command alone is
// alive and carries the highest token yet.
type leader struct {
	id      string
	token   uint64
	session string
}

// steady returns the leader if the run is steady: every candidate runs, one
// holds the key, its command is the only one alive and has the highest
// token. Otherwise it says why not.
func (c *cluster) steady() (leader, string) {
	for _, cd := range c.cands {
		if !cd.running() {
			return leader{}, cd.id + " is not running"
		}
	}
	if err := c.follower.poll(); err != nil {
		c.t.Fatalf("reading the leadership log: %v", err)
	}
	h, err := c.holder()
	if err != nil {
		return leader{}, err.Error()
	}
	if h.session == "" {
		return leader{}, "nobody holds the key"
	}
	live := c.follower.live()
	if len(live) != 1 {
		var names []string
		for _, t := range live {
			names = append(names, fmt.Sprintf("%s/%d", t.id, t.token))
		}
		return leader{}, fmt.Sprintf("%d commands alive %v, %s holds the key", len(live), names, h.id)
	}
	if live[0].id != h.id || live[0].token != c.follower.maxToken {
		return leader{}, fmt.Sprintf("the live command is %s/%d, %s holds the key, highest token %d", live[0].id, live[0].token, h.id, c.follower.maxToken)
	}
	return leader{id: h.id, token: live[0].token, session: h.session}, ""
}

// waitSteady polls until the run is steady with a leader that satisfies ok.
func (c *cluster) waitSteady(bound time.Duration, what string, ok func(leader) bool) (leader, error) {
	deadline := time.Now().Add(bound)
	why := ""
	for {
		l, notSteady := c.steady()
		if notSteady == "" && ok(l) {
			return l, nil
		}
		if notSteady != "" {
			why = notSteady
		} else {
			why = fmt.Sprintf("%s/%d leads", l.id, l.token)
		}
		if time.Now().After(deadline) {
			return leader{}, fmt.Errorf("no %s within %s: %s", what, bound, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// inject applies one fault to the leader and returns its record. It returns
// once the fault is undone (a candidate killed has been started again).
func (c *cluster) inject(seq int, p planned, l leader) (Fault, error) {
	f := Fault{Seq: seq, Kind: p.kind, Target: l.id, Token: l.token, Params: p.params(), FastFailover: c.cfg.fastFailover[l.id]}
	if p.kind == LatencySpike {
		f.Latency = p.latency
	}
	cd := c.candidate(l.id)
	api := c.cfg.api[cd.id]
	switch p.kind {
	case SnapshotRestore, RaftLeaderKill, ServerCut:
		return f, c.injectConsulFault(p, &f, l) // consulfaults_test.go
	case KillLeader:
		f.At = time.Now()
		cd.signal(syscall.SIGKILL)
		if !cd.wait(10 * time.Second) {
			return f, fmt.Errorf("%s survived SIGKILL for 10s", cd.id)
		}
		f.Healed = time.Now()
		cd.start()

	case FreezeLeader, FreezeElect:
		pid := cd.pid()
		command, tree := cd.command()
		if command == 0 {
			return f, fmt.Errorf("%s leads but runs no command", cd.id)
		}
		pids := []int{pid}
		if p.kind == FreezeLeader {
			for _, proc := range tree {
				pids = append(pids, proc.pid)
			}
		}
		f.At = time.Now()
		signalAll(syscall.SIGSTOP, pids...) // consul-elect first: it cannot react
		// Signals arrive asynchronously: wait until every thread stopped.
		stopBy := time.Now().Add(5 * time.Second)
		for _, pid := range pids {
			for !allThreadsStopped(pid) && time.Now().Before(stopBy) {
				time.Sleep(time.Millisecond)
			}
		}
		time.Sleep(p.hold)
		// The command resumes first, as it may on a thawed machine, and
		// gets a chance to write with its stale token.
		for i := len(pids) - 1; i > 0; i-- {
			signalAll(syscall.SIGCONT, pids[i])
		}
		signalAll(syscall.SIGCONT, pid)
		f.Resumed = time.Now()
		f.Healed = f.Resumed
		if api {
			// Its work stops, the process lives on: the checker measures
			// the stale term's last line instead.
			f.Params += " (Go candidate: the whole process)"
			break
		}
		f.CommandGone = waitGone(command, 10*time.Second)
		if f.CommandGone.IsZero() {
			return f, fmt.Errorf("%s's stale command %d still runs 10s after consul-elect resumed", cd.id, command)
		}

	case CutLeader:
		f.At = time.Now()
		cd.proxy.Cut(p.mode)
		time.Sleep(p.hold)
		cd.proxy.Heal()
		f.Healed = time.Now()

	case LatencySpike:
		f.At = time.Now()
		cd.proxy.SetLatency(p.latency)
		time.Sleep(p.hold)
		cd.proxy.SetLatency(0)
		f.Healed = time.Now()

	case DestroySession:
		req, err := http.NewRequest(http.MethodPut, c.agent.URL()+"/v1/session/destroy/"+l.session, nil)
		if err != nil {
			return f, err
		}
		f.At = time.Now()
		resp, err := c.http.Do(req)
		if err != nil {
			return f, fmt.Errorf("destroying the session: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return f, fmt.Errorf("destroying the session: %s", resp.Status)
		}
		f.Healed = f.At

	case RestartAgent:
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		f.At = time.Now()
		if err := c.agent.Restart(ctx); err != nil {
			return f, err
		}
		f.Healed = time.Now()
		f.Extra = f.Healed.Sub(f.At)
		f.Params = "back after " + f.Extra.Round(time.Millisecond).String()

	case HangupLeader, QuitLeader:
		sig := syscall.SIGHUP
		if p.kind == QuitLeader {
			sig = syscall.SIGQUIT
		}
		f.At = time.Now()
		cd.signal(sig)
		// The drain: the kill grace, then the release and the destroy.
		if !cd.wait(20 * time.Second) {
			return f, fmt.Errorf("%s still runs 20s after %s", cd.id, sig)
		}
		f.Healed = time.Now()
		if code := cd.exitCode(); code != 0 {
			return f, fmt.Errorf("%s exited with status %d after %s; want 0, as after SIGTERM", cd.id, code, sig)
		}
		cd.start()

	case HTTP500, HTTP429:
		status := http.StatusInternalServerError
		body := "No cluster leader" // what Consul answers while it elects a leader
		if p.kind == HTTP429 {
			status, body = http.StatusTooManyRequests, "rate limit exceeded"
		}
		timing := c.timing(cd.id)
		f.Burst, f.Short = p.burstLength(timing), p.short
		f.Params = fmt.Sprintf("%s, %s (keep point %s, step-down point %s)", p.params(), f.Burst.Round(time.Millisecond),
			keepPoint(timing).Round(time.Millisecond), stepDownPoint(timing).Round(time.Millisecond))
		burst := cd.answers.Arm(faultproxy.Fault{Status: status, Body: body, For: f.Burst, When: func(r *http.Request) bool {
			return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/v1/session/renew/")
		}})
		select {
		case <-burst.Began():
		case <-time.After(10 * time.Second):
			cd.answers.Arm(faultproxy.Fault{Status: status, When: func(*http.Request) bool { return false }}) // disarm
			return f, fmt.Errorf("%s sent no renewal within 10s", cd.id)
		}
		f.At = burst.BeganAt()
		<-burst.Ended()
		f.Healed = burst.EndedAt()
		c.mu.Lock()
		c.injected[status] += burst.Answered()
		c.mu.Unlock()
		f.Params += fmt.Sprintf(", %d answers", burst.Answered())

	case DestroyFollowerSession:
		var followers []*candidate
		for _, other := range c.cands {
			if other.id != l.id {
				followers = append(followers, other)
			}
		}
		cd = followers[p.pick%len(followers)]
		f.Target, f.FastFailover = cd.id, c.cfg.fastFailover[cd.id]
		// A follower may be between sessions (the last fault may have
		// cost it its own): wait for it to have one.
		var old []string
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			var err error
			if old, err = c.sessions(cd.id); err == nil && len(old) == 1 {
				break
			}
			if time.Now().After(deadline) {
				return f, fmt.Errorf("%s has sessions %v (%v) after 20s; want one", cd.id, old, err)
			}
		}
		req, err := http.NewRequest(http.MethodPut, c.agent.URL()+"/v1/session/destroy/"+old[0], nil)
		if err != nil {
			return f, err
		}
		f.At = time.Now()
		resp, err := c.http.Do(req)
		if err != nil {
			return f, fmt.Errorf("destroying %s's session: %w", cd.id, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return f, fmt.Errorf("destroying %s's session: %s", cd.id, resp.Status)
		}
		// It must notice and create another.
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			now, err := c.sessions(cd.id)
			if err == nil && len(now) == 1 && now[0] != old[0] {
				f.Healed = time.Now()
				break
			}
			if time.Now().After(deadline) {
				return f, fmt.Errorf("%s has sessions %v (%v) 20s after its session %s was destroyed; want a new one", cd.id, now, err, old[0])
			}
		}
		f.Params = "new session after " + f.Healed.Sub(f.At).Round(time.Millisecond).String()

	case Switchover:
		cmd := exec.Command(binaries.consulElect, "switchover", "--address", c.agent.URL(), "--prefix", prefix,
			"--resource", resource, "--yes", "--timeout", "30s")
		cmd.Env = append(os.Environ(), c.marker, "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
		if p.slowed {
			// The leader hears of the switchover and releases through the
			// slowed link: about two round trips more.
			cd.proxy.SetLatency(p.latency / 4)
			defer cd.proxy.SetLatency(0)
			f.Extra = 4 * (p.latency / 4)
		}
		f.At = time.Now()
		out, err := cmd.CombinedOutput()
		f.Healed = time.Now()
		if err != nil {
			return f, fmt.Errorf("consul-elect switchover: %v\n%s", err, out)
		}
		if f.Params != "" {
			f.Params += ", "
		}
		f.Params += "done after " + f.Healed.Sub(f.At).Round(time.Millisecond).String()
	}
	return f, nil
}

// sessions lists the ids of candidate id's sessions ("consul-elect ID").
func (c *cluster) sessions(id string) ([]string, error) {
	resp, err := c.http.Get(c.agent.URL() + "/v1/session/list")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/session/list: %s", resp.Status)
	}
	var list []struct{ ID, Name string }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, err
	}
	var out []string
	for _, s := range list {
		if s.Name == "consul-elect "+id {
			out = append(out, s.ID)
		}
	}
	return out, nil
}

// runFaults injects faults from the seed's schedule until transitions
// faults have been followed by a new leader and every kind has been
// injected at least twice (two rounds of the schedule), or budget has
// passed.
func (c *cluster) runFaults(transitions int, budget time.Duration) (moved int) {
	t := c.t
	schedule := planKinds(c.seed, 10000, c.cfg.bounds, c.cfg.faultKinds())
	first, err := c.waitSteady(2*time.Minute, "first leader", func(leader) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first leader %s/%d after %s", first.id, first.token, time.Since(c.startedAt).Round(time.Millisecond))
	deadline := time.Now().Add(budget)
	for seq := 1; moved < transitions || seq <= 2*len(c.cfg.faultKinds()); seq++ {
		if time.Now().After(deadline) {
			t.Errorf("only %d of %d transitions within %s", moved, transitions, budget)
			return moved
		}
		p := schedule[seq-1]
		time.Sleep(p.settle)
		l, err := c.waitSteady(time.Minute, "steady leader", func(leader) bool { return true })
		if err != nil {
			t.Errorf("before fault #%d: %v", seq, err)
			return moved
		}
		f, err := c.inject(seq, p, l)
		c.faults = append(c.faults, f)
		if err != nil {
			t.Errorf("fault #%d (%s of %s/%d): %v", seq, p.kind, l.id, l.token, err)
			return moved
		}
		bound := c.cfg.bounds.Failover() + f.Extra + recoverySlack
		// A short burst must not end the term, but the checker says so:
		// here any steady leader will do.
		next, err := c.waitSteady(bound, "leader after the fault", func(n leader) bool {
			return n.token > f.Token || !f.EndsTerm()
		})
		if err != nil {
			t.Errorf("fault #%d (%s of %s/%d, %s): %v", seq, p.kind, l.id, l.token, f.Params, err)
			return moved
		}
		for _, cd := range c.cands {
			cd.sawFault()
		}
		outcome := "leader kept"
		if next.token != f.Token {
			moved++
			outcome = fmt.Sprintf("new leader %s/%d", next.id, next.token)
		}
		t.Logf("#%d %s of %s/%d %s: %s after %s (%d/%d transitions)", seq, p.kind, l.id, l.token, f.Params,
			outcome, time.Since(f.At).Round(time.Millisecond), moved, transitions)
	}
	return moved
}

// overlapSeen checks the log so far for an overlap no freeze explains.
func (c *cluster) overlapSeen() bool {
	data, err := os.ReadFile(c.logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	events, err := ParseEvents(data)
	if err != nil {
		c.t.Fatal(err)
	}
	return len(Check(events, nil, c.faults, c.cfg.bounds).Violations) > 0
}

// finish stops every candidate as an operator would (SIGTERM), proves that
// nothing the run started is left, checks the log and the store, and
// reports. The caller asserts on the report.
func (c *cluster) finish() *Report {
	t := c.t
	usageReport := c.usageReport() + c.answersReport()
	for _, cd := range c.cands {
		if cd.running() {
			cd.signal(syscall.SIGTERM)
		}
	}
	for _, cd := range c.cands {
		if !cd.wait(20 * time.Second) {
			t.Errorf("%s did not exit within 20s of SIGTERM", cd.id)
		}
		cd.mu.Lock()
		for _, u := range cd.unexpected {
			t.Errorf("unexpected exit: %s", u)
		}
		cd.mu.Unlock()
		output, _ := os.ReadFile(filepath.Join(c.dir, cd.id+".out"))
		if strings.Contains(string(output), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported in %s's output (%s)", cd.id, filepath.Join(c.dir, cd.id+".out"))
		}
	}
	// The shim kills the command's tree before consul-elect exits; give
	// stragglers a moment, then call whatever is left a leak.
	var left []procStat
	for range 100 {
		if left = markedProcesses(c.marker); len(left) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range left {
		t.Errorf("process %d (%s) of the run outlived its consul-elect", p.pid, p.comm)
	}

	data, err := os.ReadFile(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	events, err := ParseEvents(data)
	if err != nil {
		t.Fatal(err)
	}
	writes, err := ReadWrites(c.storeDir)
	if err != nil {
		t.Fatal(err)
	}
	b := c.cfg.bounds
	report := Check(events, writes, c.faults, b)
	summary := fmt.Sprintf("seed %d, %d faults in %s, %d candidates (%d slow to stop), --ttl %s --lock-delay %s --kill-grace %s\n\n%s",
		c.seed, len(c.faults), time.Since(c.startedAt).Round(time.Second), candidates, len(c.cfg.slowToStop),
		b.TTL, b.LockDelay, b.KillGrace, report.Summary()+usageReport)
	t.Log("\n" + summary)
	full := summary + "\n" + report.Details()
	_ = os.WriteFile(filepath.Join(c.dir, "report.md"), []byte(full), 0o644)
	if *reportFlag != "" {
		if err := os.WriteFile(*reportFlag, []byte(full), 0o644); err != nil {
			t.Error(err)
		}
	}
	return report
}

// assertSafe fails the test on any safety or liveness problem of the report
// (liveness against generous bounds).
func assertSafe(t *testing.T, report *Report) {
	t.Helper()
	for _, p := range report.SafetyProblems() {
		t.Errorf("safety: %s", p)
	}
	for _, p := range report.LivenessProblems(livenessSlack) {
		t.Errorf("liveness: %s", p)
	}
	for _, rec := range report.Recoveries {
		if rec.StaleLifetime > staleLifetimeBound {
			t.Errorf("fault #%d: the stale command lived %s after consul-elect resumed (bound %s)", rec.Fault.Seq, rec.StaleLifetime, staleLifetimeBound)
		}
	}
}

// usageReport says what the running consul-elect processes hold now,
// against what they held after their first fault: a leak of connections or
// goroutines (which need threads only when blocked) would grow it.
func (c *cluster) usageReport() string {
	var b strings.Builder
	b.WriteString("\nconsul-elect processes at the end (after their first fault → now):\n\n")
	for _, cd := range c.cands {
		pid := cd.pid()
		now, err := readUsage(pid)
		if pid == 0 || err != nil {
			fmt.Fprintf(&b, "- %s: not running\n", cd.id)
			continue
		}
		cd.mu.Lock()
		if cd.faultsSeen == 0 {
			fmt.Fprintf(&b, "- %s (start #%d, no fault yet): %s\n", cd.id, cd.starts, now)
		} else {
			fmt.Fprintf(&b, "- %s (start #%d, lived through %d faults): %s → %s\n", cd.id, cd.starts, cd.faultsSeen, cd.baseline, now)
		}
		cd.mu.Unlock()
	}
	return b.String()
}

// answersReport counts the agent's 429 answers that reached a candidate
// (there must be none: the engine's requests stay within the agent's
// limits) apart from the error answers the HTTP proxies made up.
func (c *cluster) answersReport() string {
	agent429 := 0
	for _, cd := range c.cands {
		agent429 += cd.answers.Passed(http.StatusTooManyRequests)
	}
	if agent429 > 0 {
		c.t.Errorf("the agent answered 429 %d times", agent429)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("\nAnswers 429 from the agent: **%d**; made up by the HTTP proxies (bursts): %d answers 429, %d answers 500\n",
		agent429, c.injected[http.StatusTooManyRequests], c.injected[http.StatusInternalServerError])
}

// runChaos is a whole run: transitions forced transitions within budget.
func runChaos(t *testing.T, transitions int, budget time.Duration) {
	runChaosWith(t, runConfig, transitions, budget)
}

// runChaosWith is a whole run of cfg.
func runChaosWith(t *testing.T, cfg config, transitions int, budget time.Duration) {
	if *transitionsFlag > 0 {
		transitions = *transitionsFlag
	}
	if cfg.bounds.LockDelay < cfg.bounds.KillGrace {
		t.Fatal("the run breaks its own rule: lock-delay must be at least the kill grace")
	}
	c := newCluster(t, cfg, seed(t))
	moved := c.runFaults(transitions, budget)
	report := c.finish()
	assertSafe(t, report)
	if moved < transitions {
		t.Errorf("%d forced transitions; want %d", moved, transitions)
	}
	if report.Transitions < moved {
		t.Errorf("the harness saw %d transitions, the log only %d", moved, report.Transitions)
	}
}
