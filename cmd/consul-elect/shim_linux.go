package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// The shim stands between consul-elect and a leader's command, so that no
// process of the command's tree can outlive consul-elect:
//
//   - consul-elect starts it ahead of a term (see prepared in
//     child_linux.go) and sends it the term's environment on fd 3; the shim
//     starts the command then, and answers on fd 4. If fd 3 closes first,
//     there is no term: the shim exits.
//   - It runs the command in a process group of its own, started from a
//     thread locked for the shim's whole life with Pdeathsig SIGKILL: if the
//     shim dies, so does the command.
//   - It is a child subreaper: descendants orphaned inside the tree are
//     re-parented to it rather than to init, so that it can find them even
//     when they left the command's process group, kill them, and reap them.
//   - consul-elect starts it with Pdeathsig shimKillSignal, and sends the
//     same signal to kill: either way the shim SIGKILLs the whole tree, waits
//     until it is gone, and exits.
//   - SIGTERM and SIGINT are passed on to the command's process group.
//   - When the command exits, what it left behind is killed too; once the
//     whole tree is gone the shim says so on fd 4 ("exited CODE") and exits
//     with the command's exit code (128 + signal if killed).

// shimKillSignal tells the shim to kill the command's tree: sent by
// consul-elect, or by the kernel when consul-elect dies.
const shimKillSignal = syscall.SIGUSR1

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER of prctl(2).
const prSetChildSubreaper = 36

// The shim's ends of its pipes to consul-elect.
const (
	shimControlFD = 3 // consul-elect → shim: the term's environment, one JSON line
	shimStatusFD  = 4 // shim → consul-elect: started PID | failed REASON, then exited CODE
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
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		fmt.Fprintf(os.Stderr, "consul-elect: cannot become a child subreaper: %v\n", errno)
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
	control, status := os.NewFile(shimControlFD, "control"), os.NewFile(shimStatusFD, "status")
	// Everything but the term's environment is ready before the term.
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
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
	fmt.Fprintf(status, "started %d\n", group)
	exits := reapChildren()
	for {
		select {
		case sig := <-signals:
			if sig == shimKillSignal {
				sweep(group, exits)
				return exitWith(status, 128+int(syscall.SIGKILL))
			}
			_ = syscall.Kill(-group, sig.(syscall.Signal))
		case exit, ok := <-exits:
			if !ok {
				return exitWith(status, exitRuntime) // cannot happen: the command is our child until reaped here
			}
			if exit.pid == group {
				sweep(group, exits)
				return exitWith(status, exit.code)
			}
		}
	}
}

// awaitTerm reads the term's environment from control, on this goroutine:
// the start of a term is on the handover's path. It reports false if control
// closes first (consul-elect let the shim go, or died), or if a signal came
// meanwhile: there is no term.
func awaitTerm(control *bufio.Reader, signals <-chan os.Signal) ([]string, bool) {
	var vars []string
	line, err := control.ReadBytes('\n')
	if err != nil || json.Unmarshal(line, &vars) != nil {
		return nil, false
	}
	select {
	case <-signals:
		return nil, false
	default:
		return vars, true
	}
}

// exitWith tells consul-elect that the command's tree is gone, with its
// exit code, and returns the code for the shim's own exit.
func exitWith(status *os.File, code int) int {
	fmt.Fprintf(status, "exited %d\n", code)
	return code
}

func firstOr(args []string, otherwise string) string {
	if len(args) == 0 {
		return otherwise
	}
	return args[0]
}

type exited struct{ pid, code int }

// reapChildren waits for every child of the shim, the command and adopted
// orphans alike, and sends each exit. The channel is closed when the shim has
// no child left.
func reapChildren() <-chan exited {
	exits := make(chan exited)
	go func() {
		defer close(exits)
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, 0, nil)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				return // ECHILD
			}
			code := status.ExitStatus()
			if status.Signaled() {
				code = 128 + int(status.Signal())
			}
			exits <- exited{pid: pid, code: code}
		}
	}()
	return exits
}

// sweep SIGKILLs what is left of the command's tree and returns once all of
// it is gone and reaped: the command's process group, and the children we
// adopted, which includes every descendant that left the group once its
// parents are dead.
func sweep(group int, exits <-chan exited) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		_ = syscall.Kill(-group, syscall.SIGKILL)
		if !hasChildren() {
			return // nothing left: no need to look through /proc
		}
		for _, pid := range childrenOf(os.Getpid()) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case _, ok := <-exits:
			if !ok {
				return
			}
		case <-tick.C:
		}
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
	const pAll = 0
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pAll, 0, uintptr(unsafe.Pointer(&info[0])),
			syscall.WEXITED|syscall.WNOHANG|syscall.WNOWAIT, 0, 0)
		if errno != syscall.EINTR {
			return errno != syscall.ECHILD
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
