package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The shim stands between consul-elect and a leader's command, so that no
// process of the command's tree can outlive consul-elect:
//
//   - consul-elect starts it ahead of a term (see prepared in
//     child_linux.go) and sends it the term's environment on fd 3; the shim
//     starts the command then, and answers on fd 4 with the command's pidfd,
//     through which consul-elect sends SIGTERM to the command's group
//     itself. If fd 3 closes first, there is no term: the shim exits.
//   - It runs the command in a process group of its own, started from a
//     thread locked for the shim's whole life with Pdeathsig SIGKILL: if the
//     shim dies, so does the command.
//   - It is a child subreaper: descendants orphaned inside the tree are
//     re-parented to it rather than to init, so that it can find them even
//     when they left the command's process group, kill them, and reap them.
//   - consul-elect starts it with Pdeathsig shimKillSignal, and sends the
//     same signal to kill: either way the shim SIGKILLs the whole tree, waits
//     until it is gone, and exits.
//   - SIGTERM and SIGINT are passed on to the command's process group (for
//     a kernel on which consul-elect cannot signal it itself).
//   - When the command exits, what it left behind is killed too; once the
//     whole tree is gone the shim says so on fd 4 ("exited CODE") and exits
//     with the command's exit code (128 + signal if killed).

// shimKillSignal tells the shim to kill the command's tree: sent by
// consul-elect, or by the kernel when consul-elect dies.
const shimKillSignal = syscall.SIGUSR1

// The shim's ends of its pipe and its socket to consul-elect.
const (
	shimControlFD = 3 // consul-elect → shim: the term's environment, NAME=VALUE NUL…, then NUL
	shimStatusFD  = 4 // shim → consul-elect: started PID (with its pidfd) | failed REASON, then exited CODE
)

func shimMain(args []string) int {
	// The command's Pdeathsig is tied to the thread that forks it: this
	// one, which stays locked until the shim exits.
	runtime.LockOSThread()
	parent, err := strconv.Atoi(firstOr(args, ""))
	if err != nil || len(args) < 2 {
		fmt.Fprintln(os.Stderr, "consul-elect: "+shimCommand+" is started by consul-elect run, not by hand")
		return exitUsage
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, shimKillSignal)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "consul-elect: cannot become a child subreaper: %v\n", err)
		return exitRuntime
	}
	// consul-elect may have died before our Pdeathsig was armed, or before
	// we listened for it: then run nothing.
	if os.Getppid() != parent {
		return exitRuntime
	}
	// The pipes are ours, not the command's.
	syscall.CloseOnExec(shimControlFD)
	syscall.CloseOnExec(shimStatusFD)
	// Blocking (os.Pipe made consul-elect's end non-blocking, and the flag
	// came along): the term's environment then wakes this thread in read(2)
	// itself, not through the Go scheduler's poller and a hand-off to this
	// locked thread.
	_ = syscall.SetNonblock(shimControlFD, false)
	control, status := os.NewFile(shimControlFD, "control"), os.NewFile(shimStatusFD, "status")
	// Everything but the term's environment is ready before the term,
	// including what os/exec would do on first use: open /dev/null for the
	// command's stdin, and probe the kernel for pidfds (a fork of its own).
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if devNull, err := os.Open(os.DevNull); err == nil {
		cmd.Stdin = devNull
	}
	if self, err := os.FindProcess(os.Getpid()); err == nil {
		_ = self.Release()
	}
	pidfd := -1
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, PidFD: &pidfd}
	vars, ok := awaitTerm(bufio.NewReader(control), signals)
	control.Close()
	if !ok {
		return exitOK // no term after all
	}
	cmd.Env = append(os.Environ(), vars...)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(status, "failed cannot start %s: %v\n", args[1], oneLine(err))
		return 127
	}
	// The command leads its process group. We reap it ourselves, with the
	// orphans we adopt, rather than through cmd.Wait.
	group := cmd.Process.Pid
	started := []byte("started " + strconv.Itoa(group) + "\n")
	if pidfd >= 0 {
		_ = syscall.Sendmsg(shimStatusFD, started, syscall.UnixRights(pidfd), nil, syscall.MSG_NOSIGNAL)
		syscall.Close(pidfd)
	} else {
		_, _ = status.Write(started)
	}
	return exitWith(status, supervise(group, signals))
}

// supervise waits on this thread until the command, the leader of group,
// has exited, then sweeps what is left of its tree, and returns the
// command's exit code (128 + SIGKILL if the shim was told to kill it).
// Signals are handled meanwhile by another goroutine: the command's exit
// wakes this thread and no other.
func supervise(group int, signals <-chan os.Signal) int {
	var killed atomic.Bool
	go func() {
		for sig := range signals {
			if sig == shimKillSignal {
				killed.Store(true)
				killTree(group)
				continue
			}
			_ = syscall.Kill(-group, sig.(syscall.Signal))
		}
	}()
	code := exitRuntime // if the command is not ours to reap: cannot happen
	for {
		pid, status, err := reap(0)
		if err != nil {
			break
		}
		if pid == group {
			code = status
			break
		}
	}
	sweep(group)
	if killed.Load() {
		return 128 + int(syscall.SIGKILL)
	}
	return code
}

// awaitTerm reads the term's environment from control, on this goroutine:
// the start of a term is on the handover's path. It reports false if control
// closes first (consul-elect let the shim go, or died), or if a signal came
// meanwhile: there is no term.
func awaitTerm(control *bufio.Reader, signals <-chan os.Signal) ([]string, bool) {
	var vars []string
	for {
		v, err := control.ReadString(0)
		if err != nil {
			return nil, false // closed before the end of the environment
		}
		if v = v[:len(v)-1]; v == "" {
			break
		}
		vars = append(vars, v)
	}
	select {
	case <-signals:
		return nil, false
	default:
		return vars, true
	}
}

// exitWith tells consul-elect that the command's tree is gone, with its
// exit code, and returns the code for the shim's own exit, which it leaves
// to idle time.
func exitWith(status *os.File, code int) int {
	_, _ = status.WriteString("exited " + strconv.Itoa(code) + "\n")
	idle()
	return code
}

func firstOr(args []string, otherwise string) string {
	if len(args) == 0 {
		return otherwise
	}
	return args[0]
}

// reap waits for a child of the shim, the command or an adopted orphan
// (with options WNOHANG, only for one that has exited: pid 0 if none has),
// and returns its exit code, 128 + the signal if one killed it. It fails
// with ECHILD when the shim has no child left.
func reap(options int) (pid, code int, err error) {
	for {
		var status syscall.WaitStatus
		pid, err = syscall.Wait4(-1, &status, options, nil)
		if err == syscall.EINTR { // not errors.Is: its first call costs a fresh process more
			continue
		}
		if err != nil || pid == 0 {
			return pid, 0, err
		}
		if status.Signaled() {
			return pid, 128 + int(status.Signal()), nil
		}
		return pid, status.ExitStatus(), nil
	}
}

// sweepEvery is how often the sweep kills what is left of the tree outside
// the command's group: descendants that left it, adopted by the shim.
const sweepEvery = 10 * time.Millisecond

// sweep SIGKILLs what is left of the command's tree and returns once all of
// it is gone and reaped: the command's process group at once, and the
// children we adopted (which includes every descendant that left the group,
// once its parents are dead) within sweepEvery. Most commands leave only
// members of their group, dying already: they are reaped without a look
// through /proc.
func sweep(group int) {
	_ = syscall.Kill(-group, syscall.SIGKILL)
	for {
		if pid, _, err := reap(syscall.WNOHANG); err != nil || pid == 0 {
			break
		}
	}
	if !hasChildren() {
		return // nothing left
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(sweepEvery)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			killTree(group)
		}
	}()
	for {
		if _, _, err := reap(0); err != nil {
			return // ECHILD: no child left
		}
	}
}

// idle lowers every thread of the shim to SCHED_IDLE. Once it has said that
// the tree is gone, what is left to do, mostly the kernel's teardown of the
// shim's memory, is on nobody's path, while the next leader's command may be
// starting on the same cores.
func idle() {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return
	}
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			_ = unix.SchedSetAttr(tid, &unix.SchedAttr{Policy: unix.SCHED_IDLE}, 0)
		}
	}
}

// killTree SIGKILLs the command's process group and every child of the
// shim.
func killTree(group int) {
	_ = syscall.Kill(-group, syscall.SIGKILL)
	for _, pid := range childrenOf(os.Getpid()) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// taskChildren lists pid's children from /proc/PID/task/*/children: each
// thread's children (an orphan adopted by a subreaper becomes a child of one
// of its threads). It reports false when the kernel has no such files.
func taskChildren(pid int) ([]int, bool) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task/"
	if _, err := os.Stat(dir + strconv.Itoa(pid) + "/children"); err != nil {
		return nil, false // the main thread's is there whenever the kernel has them
	}
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil, false
	}
	var children []int
	for _, t := range tasks {
		list, err := os.ReadFile(dir + t.Name() + "/children")
		if err != nil {
			continue // the thread has ended
		}
		for _, f := range strings.Fields(string(list)) {
			if child, err := strconv.Atoi(f); err == nil {
				children = append(children, child)
			}
		}
	}
	return children, true
}

// hasChildren reports whether the shim has any child left, running or
// waiting to be reaped: waitid(P_ALL, WEXITED|WNOHANG|WNOWAIT) fails with
// ECHILD only when there is none. Orphans are re-parented to the shim before
// their parent can be reaped, so no child means no tree.
func hasChildren() bool {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return err != unix.ECHILD
		}
	}
}

// childrenOf lists the processes whose parent is pid: from its threads'
// children files when the kernel has them (CONFIG_PROC_CHILDREN, a read per
// thread), else by reading the parent of every process in /proc.
func childrenOf(pid int) []int {
	if children, ok := taskChildren(pid); ok {
		return children
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := strconv.Itoa(pid)
	var children []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == want {
			children = append(children, child)
		}
	}
	return children
}
