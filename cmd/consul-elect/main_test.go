//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/internal/devconsul"
	"github.com/excalibur/consul-elect/internal/leakcheck"
	"go.uber.org/goleak"
)

// The tests build consul-elect and drive it as a user would, against a real
// Consul agent. The command it runs is this test binary again, in the role
// of a leader's command (see commandMain). They run on Linux only: they look
// at processes in /proc, and the guarantees they check are Linux's.

// binary is the consul-elect built for this test run.
var binary string

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == shimCommand {
		os.Exit(shimMain(os.Args[2:])) // a shim started by a test's launcher
	}
	switch os.Getenv(roleEnv) {
	case "command":
		os.Exit(commandMain())
	case "grandchild":
		grandchildMain()
	}
	// Race-enabled programs sleep a second on exit to let reports flush;
	// this suite starts dozens of them.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	dir, err := os.MkdirTemp("", "consul-elect-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "consul-elect")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building consul-elect: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		// Some tests start an engine in this process (status_test.go).
		if err := goleak.Find(leakcheck.Options()...); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// Environment of the test command.
const (
	roleEnv = "CONSUL_ELECT_TEST_ROLE" // "command" or "grandchild"
	dirEnv  = "CONSUL_ELECT_TEST_DIR"  // shared by every candidate of a test
	exitEnv = "CONSUL_ELECT_TEST_EXIT" // set: exit at once with this code
)

// record is a line the test command appends to <dir>/records.
type record struct {
	Event        string // "start", "term" (got SIGTERM), "overlap" (another tree was alive)
	ID           string
	PID          int
	Grandchild   int
	Resource     string
	Session      string
	Key          string
	FencingToken string
	At           time.Time // when the record was written
}

// commandMain is the leader's command. It proves that no two commands' trees
// are ever alive at once: it takes an exclusive flock on <dir>/lock, which
// stays held until every process holding the open file has exited, and
// hands the file to a grandchild that leaves the process group and ignores
// SIGTERM, so that only killing the whole tree frees the lock.
func commandMain() int {
	dir := os.Getenv(dirEnv)
	self := record{ID: os.Getenv(envID), PID: os.Getpid(), Resource: os.Getenv(envResource),
		Session: os.Getenv(envSession), Key: os.Getenv(envKey), FencingToken: os.Getenv(envFencingToken)}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		panic(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		self.Event = "overlap"
		writeRecord(dir, self)
		return 99
	}
	grandchild := exec.Command(os.Args[0])
	grandchild.Env = append(os.Environ(), roleEnv+"=grandchild")
	grandchild.ExtraFiles = []*os.File{lock}
	grandchild.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := grandchild.Start(); err != nil {
		panic(err)
	}
	self.Event, self.Grandchild = "start", grandchild.Process.Pid
	writeRecord(dir, self)
	if code := os.Getenv(exitEnv); code != "" {
		var n int
		fmt.Sscan(code, &n)
		return n
	}
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM)
	<-terms
	self.Event = "term"
	writeRecord(dir, self)
	return 0
}

func grandchildMain() {
	signal.Ignore(syscall.SIGTERM)
	for {
		time.Sleep(time.Hour)
	}
}

var recordsMu sync.Mutex // records of one process; O_APPEND orders processes

func writeRecord(dir string, r record) {
	recordsMu.Lock()
	defer recordsMu.Unlock()
	r.At = time.Now()
	line, _ := json.Marshal(r)
	f, err := os.OpenFile(filepath.Join(dir, "records"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		panic(err)
	}
}

func readRecords(t *testing.T, dir string) []record {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "records"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var records []record
	// Only whole lines: a writer may be between creating the file and
	// appending its line.
	complete := data[:bytes.LastIndexByte(data, '\n')+1]
	for _, line := range bytes.Split(bytes.TrimSpace(complete), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		records = append(records, r)
	}
	return records
}

// events returns the records of one kind.
func events(t *testing.T, dir, kind string) []record {
	var out []record
	for _, r := range readRecords(t, dir) {
		if r.Event == kind {
			out = append(out, r)
		}
	}
	return out
}

// noOverlap fails the test if a command ever started while another tree
// still held the lock.
func noOverlap(t *testing.T, dir string) {
	t.Helper()
	if overlaps := events(t, dir, "overlap"); len(overlaps) > 0 {
		t.Fatalf("a command started while another command's tree was alive: %+v", overlaps)
	}
}

// waitFor polls cond until it holds; the bound is generous, for liveness only.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", bound, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	leftoversMu      sync.Mutex
	leftoversChecked = map[string]bool{} // dirs whose leftovers a cleanup checks
)

// killLeftovers kills what a failed test may leave behind: test commands
// and grandchildren of dir still alive a while after every consul-elect of
// the test was killed. It checks each process's environment first, so that a
// recycled pid is left alone.
func killLeftovers(t *testing.T, dir string) {
	var alive []int
	deadline := time.Now().Add(10 * time.Second)
	for {
		alive = alive[:0]
		for _, r := range readRecords(t, dir) {
			for _, pid := range []int{r.PID, r.Grandchild} {
				environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
				if err == nil && !processGone(pid) && bytes.Contains(environ, []byte(dirEnv+"="+dir+"\x00")) {
					alive = append(alive, pid)
				}
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, pid := range alive {
		t.Errorf("process %d of the test's command tree outlived consul-elect by 10s; killing it", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// processGone reports whether pid has exited (a zombie counts as gone).
func processGone(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	return i > 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// proc is a consul-elect process started by a test.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	output *syncBuffer // stdout and stderr
	done   chan struct{}
	code   int
}

// start runs consul-elect with args and env added to the test's own. It is
// killed, if still running, when the test ends.
func start(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, output: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	// A command tree that outlived consul-elect would hold its output open.
	p.cmd.WaitDelay = 10 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		noRace(t, name, p.output.String())
		if t.Failed() || testing.Verbose() {
			t.Logf("--- output of %s (consul-elect %s) ---\n%s", name, strings.Join(args, " "), p.output.String())
		}
	})
	return p
}

// exitCode waits for the process to exit and returns its exit code.
func (p *proc) exitCode(bound time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(bound):
		p.t.Fatalf("%s did not exit within %s", p.name, bound)
		return 0
	}
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signalling %s: %v", p.name, err)
	}
}

// runCandidate starts `consul-elect run` as candidate id for resource "r",
// with the test command as its command. The 4s TTL and 1s lock-delay keep
// failovers quick; the fence window, min(TTL, lock-delay), leaves room for
// the 300ms kill grace.
func runCandidate(t *testing.T, agent *devconsul.Agent, dir, id string, flags ...string) *proc {
	t.Helper()
	return runCandidateEnv(t, agent, dir, id, "", flags...)
}

// runCandidateEnv is runCandidate with one more variable for the command.
func runCandidateEnv(t *testing.T, agent *devconsul.Agent, dir, id, env string, flags ...string) *proc {
	t.Helper()
	flags = append([]string{"--id", id, "--ttl", "4s", "--lock-delay", "1s", "--kill-grace", "300ms", "--log-level", "debug"}, flags...)
	return startRun(t, agent, dir, id, env, flags...)
}

// startRun starts `consul-elect run --resource r` with flags and the test
// command as its command, named name in the test's log; env, if not empty,
// is one more variable for the command.
func startRun(t *testing.T, agent *devconsul.Agent, dir, name, env string, flags ...string) *proc {
	t.Helper()
	leftoversMu.Lock()
	if !leftoversChecked[dir] {
		leftoversChecked[dir] = true
		// Registered before the first candidate of dir starts, so it runs
		// after every candidate's own cleanup.
		t.Cleanup(func() { killLeftovers(t, dir) })
	}
	leftoversMu.Unlock()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run", "--address", agent.URL(), "--resource", "r"}, flags...)
	args = append(args, "--", self)
	vars := []string{roleEnv + "=command", dirEnv + "=" + dir}
	if env != "" {
		vars = append(vars, env)
	}
	return start(t, name, vars, args...)
}

// consulElect runs consul-elect to completion and returns its exit code,
// stdout and stderr.
func consulElect(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("consul-elect %s: %v", strings.Join(args, " "), err)
	}
	noRace(t, "consul-elect "+strings.Join(args, " "), errOut.String())
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// noRace fails the test if the race detector reported in a process's output.
func noRace(t *testing.T, name, output string) {
	t.Helper()
	if strings.Contains(output, "WARNING: DATA RACE") {
		t.Errorf("the race detector reported in %s:\n%s", name, output)
	}
}

// lines starts consul-elect with args and returns its stdout line by line.
func lines(t *testing.T, name string, args ...string) (*proc, <-chan string) {
	t.Helper()
	p := &proc{t: t, name: name, output: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stderr = p.output
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := make(chan string, 100)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			out <- scanner.Text()
		}
		close(out)
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		noRace(t, name, p.output.String())
		if t.Failed() {
			t.Logf("--- stderr of %s ---\n%s", name, p.output.String())
		}
	})
	return p, out
}

// nextLine returns the next line of out, failing after bound.
func nextLine(t *testing.T, out <-chan string, bound time.Duration) string {
	t.Helper()
	select {
	case line, ok := <-out:
		if !ok {
			t.Fatal("the output ended")
		}
		return line
	case <-time.After(bound):
		t.Fatalf("no line within %s", bound)
		return ""
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
