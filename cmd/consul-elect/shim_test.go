//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/internal/devconsul"
	"go.uber.org/zap/zaptest"
)

// shimsOf lists the supervising shims consul-elect process pid has started:
// its children that run `consul-elect __shim` and have not exited.
func shimsOf(t *testing.T, pid int) []int {
	t.Helper()
	var shims []int
	for _, child := range childrenOf(pid) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child))
		if bytes.Contains(cmdline, []byte("\x00"+shimCommand+"\x00")) && !processGone(child) {
			shims = append(shims, child)
		}
	}
	return shims
}

func TestAStandbyKeepsItsShimReadyAndReplacesItIfItWasKilled(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	dir := t.TempDir()
	candidates := map[string]*proc{
		"a": runCandidate(t, agent, dir, "a"),
		"b": runCandidate(t, agent, dir, "b"),
	}
	first := firstLeader(t, dir)
	standby := map[string]string{"a": "b", "b": "a"}[first.ID]

	// The standby runs no command, but its shim is started and waits.
	var shims []int
	waitFor(t, 10*time.Second, "the standby's shim to be started", func() bool {
		shims = shimsOf(t, candidates[standby].cmd.Process.Pid)
		return len(shims) == 1
	})
	if started := startedBy(t, dir, standby); len(started) > 0 {
		t.Fatalf("the standby started its command: %+v", started)
	}
	// Killed meanwhile, it is replaced when the standby becomes leader.
	if err := syscall.Kill(shims[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the killed shim to be reaped", func() bool { return processGone(shims[0]) })
	candidates[first.ID].signal(syscall.SIGTERM)
	waitFor(t, 10*time.Second, "the standby's command to start", func() bool { return len(startedBy(t, dir, standby)) > 0 })
	if out := candidates[standby].output.String(); !strings.Contains(out, "started ahead is gone") {
		t.Errorf("the standby did not say that it replaced its shim:\n%s", out)
	}
	noOverlap(t, dir)
}

func TestAKilledStandbyLeavesNoShimBehind(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	dir := t.TempDir()
	runCandidate(t, agent, dir, "a")
	firstLeader(t, dir)
	b := runCandidate(t, agent, dir, "b")
	var shims []int
	waitFor(t, 10*time.Second, "the standby's shim to be started", func() bool {
		shims = shimsOf(t, b.cmd.Process.Pid)
		return len(shims) == 1
	})
	b.signal(syscall.SIGKILL)
	waitFor(t, 5*time.Second, "the killed standby's shim to exit", func() bool { return processGone(shims[0]) })
}

// startTestCommand starts the test command (commandMain) through a
// launcher of this process, as run would, and waits until it has started
// its grandchild.
func startTestCommand(t *testing.T, dir string) (*child, record) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	l := &launcher{argv: []string{self}, logger: zaptest.NewLogger(t)}
	c, err := l.start([]string{roleEnv + "=command", dirEnv + "=" + dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.kill()
		waitFor(t, 5*time.Second, "the shim to be reaped", func() bool { return processGone(c.process.Pid) })
	})
	waitFor(t, 10*time.Second, "the command to start", func() bool { return len(events(t, dir, "start")) == 1 })
	return c, events(t, dir, "start")[0]
}

// awaitStopped waits until the command's whole tree is gone and checks
// that the command heard SIGTERM and exited of it.
func awaitStopped(t *testing.T, c *child, dir string, started record) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the command's tree is still there 10s after SIGTERM")
	}
	if terms := events(t, dir, "term"); len(terms) != 1 || terms[0].PID != started.PID {
		t.Fatalf("the command should have heard SIGTERM once: %+v", terms)
	}
	if c.exitCode != 0 {
		t.Fatalf("exit code %d, want the command's 0", c.exitCode)
	}
	if !processGone(started.Grandchild) {
		t.Fatalf("the grandchild %d, which left the group, outlived the command", started.Grandchild)
	}
}

func TestConsulElectSignalsTheCommandsGroupItself(t *testing.T) {
	dir := t.TempDir()
	c, started := startTestCommand(t, dir)
	if c.pidfd == nil {
		t.Skip("the shim passed no pidfd: the kernel has no CLONE_PIDFD")
	}
	// With the shim stopped, only consul-elect's own SIGTERM can reach the
	// command.
	shim := c.process.Pid
	if err := syscall.Kill(shim, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	c.sigterm()
	if noGroupPidfd.Load() {
		_ = syscall.Kill(shim, syscall.SIGCONT)
		t.Skip("the kernel cannot signal a process group through a pidfd (Linux 6.9)")
	}
	waitFor(t, 10*time.Second, "the command to hear SIGTERM while its shim is stopped", func() bool {
		return len(events(t, dir, "term")) == 1
	})
	if err := syscall.Kill(shim, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	awaitStopped(t, c, dir, started)
}

func TestTheShimPassesSIGTERMOnWhereTheKernelCannot(t *testing.T) {
	was := noGroupPidfd.Swap(true)
	t.Cleanup(func() { noGroupPidfd.Store(was) })
	dir := t.TempDir()
	c, started := startTestCommand(t, dir)
	c.sigterm()
	awaitStopped(t, c, dir, started)
}
