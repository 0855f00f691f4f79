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
