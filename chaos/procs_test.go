//go:build linux

package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Processes, as /proc shows them: the harness finds a candidate's command
// tree, freezes and thaws it, and proves at the end that nothing it started
// is left.

// procStat is what the harness needs of /proc/PID/stat.
type procStat struct {
	pid, ppid int
	state     byte // R, S, T (stopped), Z (zombie), ...
	comm      string
}

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
	open, closing := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || closing < open || closing+2 >= len(data) {
		return procStat{}, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, data)
	}
	fields := strings.Fields(string(data[closing+2:]))
	if len(fields) < 2 {
		return procStat{}, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, data)
	}
	ppid, _ := strconv.Atoi(fields[1])
	return procStat{pid: pid, ppid: ppid, state: fields[0][0], comm: string(data[open+1 : closing])}, nil
}

// allPids lists every process.
func allPids() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// descendants returns the processes below pid, parents before children.
func descendants(pid int) []procStat {
	children := map[int][]procStat{}
	for _, p := range allPids() {
		if s, err := readStat(p); err == nil {
			children[s.ppid] = append(children[s.ppid], s)
		}
	}
	var out []procStat
	queue := []int{pid}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		for _, c := range children[next] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
	}
	return out
}

// gone reports whether pid has exited (a zombie counts as gone: it runs no
// more).
func gone(pid int) bool {
	s, err := readStat(pid)
	return err != nil || s.state == 'Z' || s.state == 'X'
}

// waitGone polls every millisecond until pid is gone and returns when it was
// first seen gone, or the zero time after bound.
func waitGone(pid int, bound time.Duration) time.Time {
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		if gone(pid) {
			return time.Now()
		}
		time.Sleep(time.Millisecond)
	}
	return time.Time{}
}

// allThreadsStopped reports whether every thread of pid is stopped (or the
// process is gone).
func allThreadsStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		s, err := readStat(tid)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil && s.state != 'T' && s.state != 't' && s.state != 'Z' {
			return false
		}
	}
	return true
}

// signalAll sends sig to each pid, ignoring those already gone.
func signalAll(sig syscall.Signal, pids ...int) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, sig)
	}
}

// markedProcesses lists the live processes whose environment holds marker
// ("NAME=VALUE"): everything a run started carries it, so a recycled pid is
// never mistaken for one of ours.
func markedProcesses(marker string) []procStat {
	needle := []byte(marker + "\x00")
	var out []procStat
	for _, pid := range allPids() {
		if pid == os.Getpid() {
			continue
		}
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !bytes.Contains(environ, needle) {
			continue
		}
		if s, err := readStat(pid); err == nil && s.state != 'Z' {
			out = append(out, s)
		}
	}
	return out
}

// usage is what a leak would grow: open file descriptors (connections
// among them), OS threads and resident memory.
type usage struct {
	fds, threads, rssKiB int
}

func (u usage) String() string {
	return fmt.Sprintf("%d fds, %d threads, %.1f MiB", u.fds, u.threads, float64(u.rssKiB)/1024)
}

func readUsage(pid int) (usage, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return usage{}, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return usage{}, err
	}
	u := usage{fds: len(fds)}
	for _, line := range strings.Split(string(status), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "Threads:":
			u.threads, _ = strconv.Atoi(fields[1])
		case "VmRSS:":
			u.rssKiB, _ = strconv.Atoi(fields[1])
		}
	}
	return u, nil
}
