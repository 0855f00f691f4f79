package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/consul"
)

// FleetSpawn returns the command of one fleet candidate process, which runs
// RunFleetCandidate with args (for example: this program, re-executed with
// FleetCandidateArg and args). The harness sets its stdin, stdout, stderr and
// SysProcAttr.
type FleetSpawn func(args []string) *exec.Cmd

// The phases of figure 7, in order. Counters are read from every candidate
// at the end of each (a "snap"); the stop phase ends with each candidate's
// own counters after Stop.
const (
	phaseCold = iota
	phaseIdle
	phaseChurn
	phaseRolling
	phaseStop
	phaseCount
)

var phaseNames = [phaseCount]string{"cold start", "idle", "churn", "rolling restart", "stop"}

// Bounds of the harness's own waits in figure 7.
const (
	fleetReadyTimeout = 60 * time.Second // every candidate's Start
	fleetSnapTimeout  = 15 * time.Second // one counters answer
	fleetExitTimeout  = fleetStopTimeout + 15*time.Second
	// fleetReleaseGap keeps the churn from releasing a key again before its
	// last takeover had time to be seen.
	fleetReleaseGap = 2 * time.Second
)

// fleetEvent is a LeadershipAcquired or LeadershipLost of one candidate
// process.
type fleetEvent struct {
	proc     int // index in fleet.procs
	resource string
	acquired bool // else lost
	at       int64
	why      string
}

// fleetProc is one candidate process. A restarted candidate is a new
// fleetProc in the same slot.
type fleetProc struct {
	idx, slot int
	id        string
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	born      int // phase it started in
	died      int // phase it was stopped in; -1 while it runs

	ready    chan fleetLine // "ready" or "fail"
	replies  chan fleetLine // "counts"
	exited   chan struct{}
	exitErr  error
	exitedAt time.Time // valid once exited is closed

	// Under fleet.mu.
	held    int
	marks   map[int]*fleetCounts // counters at the end of each phase it lived through
	stopped *fleetLine
}

// fleetRelease is one key released by the operator during the churn.
type fleetRelease struct {
	resource string
	at       int64 // when the unlock was sent
	holder   int   // process that held it (-1: unknown)
	took     time.Duration
}

// restartSample is one candidate of the rolling restart.
type restartSample struct {
	slot     int
	sigterm  time.Time
	keys     []string
	takenIn  time.Duration // SIGTERM → the last of its keys held by another
	taken    Sample        // SIGTERM → each of its keys held by another
	missing  int           // its keys not held by another within the bound
	stopTook time.Duration // its own Stop
	exitIn   time.Duration // SIGTERM → process gone
	startIn  time.Duration // the new process's Start
}

type fleet struct {
	env    *Env
	cfg    Config
	spawn  FleetSpawn
	prefix string
	names  []string
	// holdOff is how long, at most, a leader whose key an operator
	// released leaves it to the others (the engine waits LockDelay, at
	// least 1 s): the rolling restart starts this long after the churn, so
	// that it measures the restart alone.
	holdOff time.Duration
	ops     *http.Client

	mu         sync.Mutex
	procs      []*fleetProc
	live       []*fleetProc            // by slot
	events     []fleetEvent            // in arrival order (each process's own order kept)
	byResource map[string][]fleetEvent // the same, by resource
	held       map[string]int          // resource → proc holding it, as reported
	sessions   map[string]int          // session → proc
	allHeldAt  int64                   // the At of the acquisition that made all held, first
	// The same for the first acquisition and for half of them.
	firstHeldAt, halfHeldAt int64
	errors                  map[string]int  // ElectionError reported in full, by op and message
	allShares               []int           // keys per live proc when all were first held
	mostAtEnd               [phaseCount]int // the largest share of one proc as a phase ended
	snaps                   int             // "snap" requests sent, for their sequence numbers
	phase                   int
	phaseStart              [phaseCount + 1]int64
	readers                 sync.WaitGroup
}

// Fleet is figure 7: P candidate processes (spawn) campaign for the same K
// resources on one agent, each with its own counted client; the phases are
// a cold start, an idle window, an operator's churn of releases, a rolling
// restart and the final stop. It reports against the goals and
// asserts nothing.
func Fleet(ctx context.Context, env *Env, cfg Config, spawn FleetSpawn) Figure {
	fig := Figure{Name: "Figure 7: a fleet of processes"}
	opts := consulelect.DefaultOptions()
	if cfg.FleetOptions != "" {
		if err := json.Unmarshal([]byte(cfg.FleetOptions), &opts); err != nil {
			fig.Err = fmt.Errorf("FleetOptions: %w", err)
			return fig
		}
	}
	f := &fleet{env: env, cfg: cfg, spawn: spawn, prefix: env.prefix("fleet"), names: resourceNames(cfg.FleetResources),
		holdOff: max(opts.LockDelay, time.Second), ops: &http.Client{Timeout: eventTimeout},
		held: map[string]int{}, sessions: map[string]int{}, byResource: map[string][]fleetEvent{}, errors: map[string]int{}}
	defer f.ops.CloseIdleConnections()
	res, err := f.run(ctx)
	f.teardown()
	f.readers.Wait()
	fig.Rows, fig.Notes = f.report(res)
	fig.Err = err
	return fig
}

// fleetResult is what the phases measured, beside the events and counters.
type fleetResult struct {
	spawnAt      time.Time
	readyIn      []time.Duration
	allHeldIn    time.Duration // 0: not all held within the bound
	heldAtBound  int
	coldCPU      float64
	idleWindow   time.Duration
	idleCPU      float64
	churnWindow  time.Duration
	churnCPU     float64
	churnEnd     time.Time // the last release
	releases     []fleetRelease
	skipped      int   // picks that found the key free or moved
	entryBytes   int64 // size of one entry's answer (GET of one key)
	restarts     []restartSample
	cpuErr       error
	stopIn       time.Duration // SIGTERM to all → all gone
	agentPID     int
	coldDeadline time.Duration
}

func (f *fleet) run(ctx context.Context) (*fleetResult, error) {
	cfg := f.cfg
	res := &fleetResult{coldDeadline: cfg.FleetTimeout}
	var err error
	if res.agentPID, err = listenerPID(f.env.URL); err != nil {
		res.cpuErr = err
	}

	// 1. Cold start: every candidate at once.
	f.env.logf("figure 7: %d candidate processes × %d resources: cold start (at most %s)", cfg.FleetProcesses, cfg.FleetResources, cfg.FleetTimeout)
	cpu := startCPU(res.agentPID)
	res.spawnAt = time.Now()
	f.setPhase(phaseCold)
	f.live = make([]*fleetProc, cfg.FleetProcesses)
	for slot := range cfg.FleetProcesses {
		if _, err := f.start(slot); err != nil {
			return res, err
		}
	}
	for _, p := range f.live {
		took, err := f.awaitReady(ctx, p)
		if err != nil {
			return res, err
		}
		res.readyIn = append(res.readyIn, took)
	}
	progress := time.Now()
	all := waitUntil(ctx, cfg.FleetTimeout-time.Since(res.spawnAt), func() bool {
		f.mu.Lock()
		n := len(f.held)
		f.mu.Unlock()
		if time.Since(progress) > 10*time.Second {
			progress = time.Now()
			f.env.logf("figure 7: %d of %d held after %s", n, cfg.FleetResources, time.Since(res.spawnAt).Round(time.Second))
		}
		return n >= cfg.FleetResources
	})
	f.mu.Lock()
	res.heldAtBound = len(f.held)
	if all {
		res.allHeldIn = time.Duration(f.allHeldAt - res.spawnAt.UnixNano())
	}
	f.mu.Unlock()
	sleep(ctx, cfg.FleetSettle)
	res.coldCPU, _, _ = cpu.percent()
	if err := f.snapAll(ctx, phaseCold); err != nil {
		return res, err
	}

	// 2. Idle.
	f.env.logf("figure 7: idle for %s", cfg.FleetIdle)
	f.setPhase(phaseIdle)
	cpu = startCPU(res.agentPID)
	sleep(ctx, cfg.FleetIdle)
	res.idleCPU, res.idleWindow, _ = cpu.percent()
	if err := f.snapAll(ctx, phaseIdle); err != nil {
		return res, err
	}

	// 3. Churn: an operator releases held keys, keeping value and flags.
	f.env.logf("figure 7: churn, %d releases/s for %s", cfg.FleetRate, cfg.FleetChurn)
	f.setPhase(phaseChurn)
	if err := f.churn(ctx, res); err != nil {
		return res, err
	}
	f.awaitTakeovers(ctx, res.releases)
	sleep(ctx, cfg.FleetSettle)
	if err := f.snapAll(ctx, phaseChurn); err != nil {
		return res, err
	}
	if wait := f.holdOff - time.Since(res.churnEnd); wait > 0 {
		f.env.logf("figure 7: waiting %s for the old holders' hold-off to end", wait.Round(100*time.Millisecond))
		sleep(ctx, wait)
	}

	// 4. Rolling restart.
	f.setPhase(phaseRolling)
	if cfg.FleetProcesses > 1 {
		for slot := range cfg.FleetProcesses {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			s, err := f.restart(ctx, slot)
			res.restarts = append(res.restarts, s)
			if err != nil {
				return res, err
			}
			sleep(ctx, cfg.FleetSettle)
		}
	}
	if err := f.snapAll(ctx, phaseRolling); err != nil {
		return res, err
	}

	// 5. Stop every candidate at once.
	f.env.logf("figure 7: stopping every candidate")
	f.setPhase(phaseStop)
	t0 := time.Now()
	for _, p := range f.live {
		f.signal(p)
	}
	for _, p := range f.live {
		f.awaitExit(p)
	}
	res.stopIn = time.Since(t0)
	f.setPhase(phaseCount)
	return res, ctx.Err()
}

func (f *fleet) setPhase(phase int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.live {
		f.mostAtEnd[f.phase] = max(f.mostAtEnd[f.phase], p.held)
	}
	f.phase = phase
	f.phaseStart[phase] = time.Now().UnixNano()
}

// phaseAt is the phase time at (Unix ns) falls in.
func (f *fleet) phaseAt(at int64) int {
	for p := phaseCount - 1; p > 0; p-- {
		if start := f.phaseStart[p]; start != 0 && at >= start {
			return p
		}
	}
	return phaseCold
}

// start spawns the candidate of slot; it reads its lines until it exits.
func (f *fleet) start(slot int) (*fleetProc, error) {
	f.mu.Lock()
	p := &fleetProc{idx: len(f.procs), slot: slot, born: f.phase, ready: make(chan fleetLine, 1), replies: make(chan fleetLine, 4),
		died: -1, exited: make(chan struct{}), marks: map[int]*fleetCounts{}}
	p.id = fmt.Sprintf("fleet-c%d.%d", slot, f.incarnations(slot))
	f.procs = append(f.procs, p)
	f.live[slot] = p
	f.mu.Unlock()

	args := []string{"-consul", f.env.URL, "-prefix", f.prefix, "-id", p.id, "-k", strconv.Itoa(f.cfg.FleetResources)}
	if f.cfg.FleetOptions != "" {
		args = append(args, "-options", f.cfg.FleetOptions)
	}
	cmd := f.spawn(args)
	cmd.Stderr = f.env.progress
	// If the harness dies, the candidate stops as after a SIGTERM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.cmd, p.stdin = cmd, stdin
	if err := cmd.Start(); err != nil {
		close(p.exited)
		return nil, fmt.Errorf("start candidate %s: %w", p.id, err)
	}
	f.readers.Add(1)
	go func() {
		defer f.readers.Done()
		defer close(p.exited)
		r := bufio.NewReaderSize(stdout, 1<<20)
		for {
			line, err := r.ReadBytes('\n')
			if len(bytes.TrimSpace(line)) > 0 {
				var l fleetLine
				if jerr := json.Unmarshal(line, &l); jerr != nil {
					f.env.logf("figure 7: %s: unreadable line %q", p.id, line)
				} else {
					f.receive(p, l)
				}
			}
			if err != nil {
				break
			}
		}
		p.exitErr = cmd.Wait()
		p.exitedAt = time.Now()
	}()
	return p, nil
}

// incarnations counts the processes slot has had. f.mu must be held.
func (f *fleet) incarnations(slot int) int {
	n := 0
	for _, p := range f.procs {
		if p.slot == slot {
			n++
		}
	}
	return n
}

// receive takes one line of p.
func (f *fleet) receive(p *fleetProc, l fleetLine) {
	switch l.T {
	case "ready", "fail":
		select {
		case p.ready <- l:
		default:
		}
		return
	case "counts":
		select {
		case p.replies <- l:
		default: // an answer nobody waits for any more
		}
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch l.T {
	case "acq":
		f.record(fleetEvent{proc: p.idx, resource: l.R, acquired: true, at: l.At})
		f.sessions[l.Session] = p.idx
		if prev, ok := f.held[l.R]; !ok || prev != p.idx {
			if ok {
				f.procs[prev].held--
			}
			f.held[l.R] = p.idx
			p.held++
		}
		if f.firstHeldAt == 0 {
			f.firstHeldAt = l.At
		}
		if f.halfHeldAt == 0 && len(f.held) >= (f.cfg.FleetResources+1)/2 {
			f.halfHeldAt = l.At
		}
		if f.allHeldAt == 0 && len(f.held) == f.cfg.FleetResources {
			f.allHeldAt = l.At
			for _, q := range f.live {
				f.allShares = append(f.allShares, q.held)
			}
		}
	case "lost":
		f.record(fleetEvent{proc: p.idx, resource: l.R, at: l.At, why: l.Why})
		if holder, ok := f.held[l.R]; ok && holder == p.idx {
			delete(f.held, l.R)
			p.held--
		}
	case "err":
		// Alike errors of different keys read as one: "acquire: … <key> …".
		msg := l.Err
		if l.R != "" {
			msg = strings.ReplaceAll(msg, f.prefix+"/"+l.R, "<key>")
		}
		f.errors[l.Why+": "+msg]++
	case "stopped":
		p.stopped = &l
	}
}

// record keeps one event. f.mu must be held.
func (f *fleet) record(e fleetEvent) {
	f.events = append(f.events, e)
	f.byResource[e.resource] = append(f.byResource[e.resource], e)
}

func (f *fleet) awaitReady(ctx context.Context, p *fleetProc) (time.Duration, error) {
	select {
	case l := <-p.ready:
		if l.T == "fail" {
			return 0, fmt.Errorf("candidate %s: %s", p.id, l.Err)
		}
		return time.Duration(l.Took), nil
	case <-p.exited:
		return 0, fmt.Errorf("candidate %s exited before it was ready: %v", p.id, p.exitErr)
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(fleetReadyTimeout):
		return 0, fmt.Errorf("candidate %s not ready within %s", p.id, fleetReadyTimeout)
	}
}

// snapAll asks every live candidate for its counters, as the end of phase.
func (f *fleet) snapAll(ctx context.Context, phase int) error {
	var errs []error
	for _, p := range f.live {
		c, err := f.snap(ctx, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f.mu.Lock()
		p.marks[phase] = c
		f.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (f *fleet) snap(ctx context.Context, p *fleetProc) (*fleetCounts, error) {
	f.mu.Lock()
	f.snaps++
	seq := f.snaps
	f.mu.Unlock()
	if _, err := fmt.Fprintf(p.stdin, "snap %d\n", seq); err != nil {
		return nil, fmt.Errorf("candidate %s: %w", p.id, err)
	}
	timeout := time.After(fleetSnapTimeout)
	for {
		select {
		case l := <-p.replies:
			if l.Seq == seq && l.Counts != nil {
				return l.Counts, nil
			}
		case <-p.exited:
			return nil, fmt.Errorf("candidate %s exited: %v", p.id, p.exitErr)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			return nil, fmt.Errorf("candidate %s: no counters within %s", p.id, fleetSnapTimeout)
		}
	}
}

func (f *fleet) signal(p *fleetProc) {
	f.mu.Lock()
	if p.died < 0 {
		p.died = f.phase
	}
	f.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
}

// awaitExit waits for p to exit after its Stop, and kills it past the bound.
func (f *fleet) awaitExit(p *fleetProc) {
	select {
	case <-p.exited:
	case <-time.After(fleetExitTimeout):
		f.env.logf("figure 7: candidate %s did not exit within %s; killing it", p.id, fleetExitTimeout)
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// teardown stops whatever still runs (after an error).
func (f *fleet) teardown() {
	var running []*fleetProc
	for _, p := range f.procs {
		select {
		case <-p.exited:
		default:
			if p.cmd != nil && p.cmd.Process != nil {
				running = append(running, p)
			}
		}
	}
	for _, p := range running {
		f.signal(p)
	}
	for _, p := range running {
		f.awaitExit(p)
	}
}

// churn releases held keys as an operator would (consul-elect release):
// read the key, then a transaction `unlock` with its holder's session and
// flags and its value marked released (a bare PUT ?release= would rewrite
// both).
func (f *fleet) churn(ctx context.Context, res *fleetResult) error {
	cfg := f.cfg
	rate := max(cfg.FleetRate, 1)
	rng := rand.New(rand.NewPCG(7, uint64(cfg.FleetResources)))
	lastRelease := map[string]time.Time{}
	var entryBytes, entries int64
	cpu := startCPU(res.agentPID)
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for time.Since(start) < cfg.FleetChurn {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		for try := 0; try < 5; try++ {
			name := f.names[rng.IntN(len(f.names))]
			if time.Since(lastRelease[name]) < fleetReleaseGap {
				continue
			}
			key := f.prefix + "/" + name
			e, n, err := f.getKey(ctx, key)
			if err != nil {
				return err
			}
			entryBytes, entries = entryBytes+n, entries+1
			if e.Session == "" {
				res.skipped++
				continue
			}
			t0 := time.Now()
			ok, err := f.unlock(ctx, e)
			if err != nil {
				return err
			}
			if !ok {
				res.skipped++
				continue
			}
			f.mu.Lock()
			holder, known := f.sessions[e.Session]
			f.mu.Unlock()
			if !known {
				holder = -1
			}
			lastRelease[name] = t0
			res.releases = append(res.releases, fleetRelease{resource: name, at: t0.UnixNano(), holder: holder, took: time.Since(t0)})
			break
		}
	}
	res.churnCPU, res.churnWindow, _ = cpu.percent()
	res.churnEnd = time.Now()
	if entries > 0 {
		res.entryBytes = entryBytes / entries
	}
	return nil
}

// kvEntry is a key as /v1/kv answers it.
type kvEntry struct {
	Key     string
	Value   []byte // base64 in JSON
	Flags   uint64
	Session string
}

// getKey reads one key; n is the size of the answer's body.
func (f *fleet) getKey(ctx context.Context, key string) (kvEntry, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.env.URL+"/v1/kv/"+key, nil)
	if err != nil {
		return kvEntry{}, 0, err
	}
	resp, err := f.ops.Do(req)
	if err != nil {
		return kvEntry{}, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return kvEntry{}, 0, err
	}
	if resp.StatusCode == http.StatusNotFound {
		return kvEntry{}, int64(len(body)), nil
	}
	if resp.StatusCode != http.StatusOK {
		return kvEntry{}, 0, fmt.Errorf("GET %s: %s: %s", key, resp.Status, bytes.TrimSpace(body))
	}
	var entries []kvEntry
	if err := json.Unmarshal(body, &entries); err != nil || len(entries) != 1 {
		return kvEntry{}, 0, fmt.Errorf("GET %s: unexpected answer %q", key, body)
	}
	return entries[0], int64(len(body)), nil
}

// unlock releases e's key held by e.Session, writing back its value and
// flags; false when the session no longer held it (the transaction rolled
// back).
func (f *fleet) unlock(ctx context.Context, e kvEntry) (bool, error) {
	ops, err := json.Marshal([]map[string]any{{"KV": map[string]any{
		"Verb": "unlock", "Key": e.Key, "Value": consul.ReleasedValue(e.Value), "Flags": e.Flags, "Session": e.Session}}})
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, f.env.URL+"/v1/txn", bytes.NewReader(ops))
	if err != nil {
		return false, err
	}
	resp, err := f.ops.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusConflict:
		return false, nil
	}
	return false, fmt.Errorf("unlock %s: %s: %s", e.Key, resp.Status, bytes.TrimSpace(body))
}

// awaitTakeovers waits (bounded) until every released key has had a
// LeadershipAcquired after its release.
func (f *fleet) awaitTakeovers(ctx context.Context, releases []fleetRelease) {
	waitUntil(ctx, f.cfg.FleetTimeout, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, r := range releases {
			if _, ok := f.nextAcquired(r.resource, r.at, -1); !ok {
				return false
			}
		}
		return true
	})
}

// nextAcquired is the first LeadershipAcquired of resource at or after at,
// by a process other than not (-1: any). f.mu must be held.
func (f *fleet) nextAcquired(resource string, at int64, not int) (fleetEvent, bool) {
	var best fleetEvent
	found := false
	for _, e := range f.byResource[resource] {
		if e.acquired && e.at >= at && e.proc != not && (!found || e.at < best.at) {
			best, found = e, true
		}
	}
	return best, found
}

// nextLost is proc's first LeadershipLost of resource at or after at.
// f.mu must be held.
func (f *fleet) nextLost(resource string, at int64, proc int) (fleetEvent, bool) {
	var best fleetEvent
	found := false
	for _, e := range f.byResource[resource] {
		if !e.acquired && e.at >= at && e.proc == proc && (!found || e.at < best.at) {
			best, found = e, true
		}
	}
	return best, found
}

// restart SIGTERMs the candidate of slot, waits until every key it held is
// held by another candidate and it has exited, then starts it again.
func (f *fleet) restart(ctx context.Context, slot int) (restartSample, error) {
	f.mu.Lock()
	p := f.live[slot]
	s := restartSample{slot: slot}
	for r, holder := range f.held {
		if holder == p.idx {
			s.keys = append(s.keys, r)
		}
	}
	f.mu.Unlock()
	f.env.logf("figure 7: rolling restart: SIGTERM to %s (holds %d)", p.id, len(s.keys))
	s.sigterm = time.Now()
	f.signal(p)
	takenBy := func() int {
		f.mu.Lock()
		defer f.mu.Unlock()
		n := 0
		for _, r := range s.keys {
			if holder, ok := f.held[r]; ok && holder != p.idx {
				n++
			}
		}
		return n
	}
	waitUntil(ctx, f.cfg.FleetTimeout, func() bool { return takenBy() == len(s.keys) })
	f.awaitExit(p)
	s.exitIn = p.exitedAt.Sub(s.sigterm)
	f.mu.Lock()
	var last int64
	for _, r := range s.keys {
		e, ok := f.nextAcquired(r, s.sigterm.UnixNano(), p.idx)
		if !ok {
			s.missing++
			continue
		}
		last = max(last, e.at)
		s.taken = append(s.taken, time.Duration(e.at-s.sigterm.UnixNano()))
	}
	if len(s.keys) > 0 && s.missing == 0 {
		s.takenIn = time.Duration(last - s.sigterm.UnixNano())
	}
	if p.stopped != nil {
		s.stopTook = time.Duration(p.stopped.Took)
	}
	f.mu.Unlock()

	q, err := f.start(slot)
	if err != nil {
		return s, err
	}
	s.startIn, err = f.awaitReady(ctx, q)
	return s, err
}

// phaseCounts is what process p counted during phase, nil if it did not
// run in it: its counters at the end of the phase (after its Stop, in the
// phase it was stopped in) less those at the end of the phase before (zero
// in the phase it started in). PeakInFlight is the phase's own. f.mu must be
// held.
func (f *fleet) phaseCounts(p *fleetProc, phase int) *fleetCounts {
	if phase < p.born || p.died >= 0 && phase > p.died {
		return nil
	}
	end := p.marks[phase]
	peak := int64(0)
	if phase == p.died {
		if p.stopped == nil || p.stopped.Counts == nil {
			return nil
		}
		end = p.stopped.Counts
		if p.stopped.Before != nil {
			peak = p.stopped.Before.PeakInFlight
		}
	}
	if end == nil {
		return nil
	}
	start := &fleetCounts{}
	if phase > p.born {
		if start = p.marks[phase-1]; start == nil {
			return nil
		}
	}
	d := *end
	d.HTTP = end.HTTP.Since(start.HTTP)
	d.PeakInFlight = max(end.PeakInFlight, peak)
	d.CPU = end.CPU - start.CPU
	d.Acquired, d.Lost, d.Changed, d.Errors = end.Acquired-start.Acquired, end.Lost-start.Lost, end.Changed-start.Changed, end.Errors-start.Errors
	d.Refused = end.Refused - start.Refused
	return &d
}

// fleetTerm is one term of one process on one resource, by the events' At.
type fleetTerm struct {
	proc       int
	start, end int64
}

// overlaps counts the terms of a resource that began before another
// process's term of it had ended, by phase, and the longest such overlap.
// f.mu must be held.
func (f *fleet) overlaps() (byPhase [phaseCount]int, worst time.Duration, unpaired int) {
	open := map[[2]string]int64{} // proc, resource → start
	terms := map[string][]fleetTerm{}
	for _, e := range f.events {
		k := [2]string{strconv.Itoa(e.proc), e.resource}
		start, isOpen := open[k]
		switch {
		case e.acquired && isOpen:
			unpaired++ // acquired twice without a loss between
			open[k] = e.at
		case e.acquired:
			open[k] = e.at
		case isOpen:
			terms[e.resource] = append(terms[e.resource], fleetTerm{proc: e.proc, start: start, end: e.at})
			delete(open, k)
		default:
			unpaired++ // lost without having acquired
		}
	}
	for k, start := range open {
		proc, _ := strconv.Atoi(k[0])
		terms[k[1]] = append(terms[k[1]], fleetTerm{proc: proc, start: start, end: 1<<63 - 1})
	}
	for _, ts := range terms {
		slices.SortFunc(ts, func(a, b fleetTerm) int { return cmp.Compare(a.start, b.start) })
		var ends []fleetTerm // earlier terms
		for _, t := range ts {
			for _, u := range ends {
				if u.proc != t.proc && t.start < u.end {
					byPhase[f.phaseAt(t.start)]++
					worst = max(worst, time.Duration(min(t.end, u.end)-t.start))
					break
				}
			}
			ends = append(ends, t)
		}
	}
	return byPhase, worst, unpaired
}
