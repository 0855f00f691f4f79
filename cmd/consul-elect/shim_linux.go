package main

import (
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
)

// The shim stands between consul-elect and a leader's command, so that no
// process of the command's tree can outlive consul-elect:
//
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
//   - When the command exits, what it left behind is killed too, and the
//     shim exits with the command's exit code (128 + signal if killed).

// shimKillSignal tells the shim to kill the command's tree: sent by
// consul-elect, or by the kernel when consul-elect dies.
const shimKillSignal = syscall.SIGUSR1

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER of prctl(2).
const prSetChildSubreaper = 36

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

	cmd := exec.Command(args[1], args[2:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "consul-elect: cannot start %s: %v\n", args[1], err)
		return 127
	}
	// The command leads its process group. We reap it ourselves, with the
	// orphans we adopt, rather than through cmd.Wait.
	group := cmd.Process.Pid
	exits := reapChildren()
	for {
		select {
		case sig := <-signals:
			if sig == shimKillSignal {
				sweep(group, exits)
				return 128 + int(syscall.SIGKILL)
			}
			_ = syscall.Kill(-group, sig.(syscall.Signal))
		case exit, ok := <-exits:
			if !ok {
				return exitRuntime // cannot happen: the command is our child until reaped here
			}
			if exit.pid == group {
				sweep(group, exits)
				return exit.code
			}
		}
	}
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

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
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
