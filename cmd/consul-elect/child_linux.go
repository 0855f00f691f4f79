package main

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// shimKillTimeout is how long the shim may take to kill the command's tree
// before consul-elect kills the shim itself (the command then dies by its
// Pdeathsig, though descendants that left its process group may not).
const shimKillTimeout = 2 * time.Second

// startChild runs argv under a supervising shim: consul-elect re-executed
// (/proc/self/exe, the very binary running even if it was replaced on disk).
// The shim starts the command in a process group of its own and kills the
// whole tree when told to, when the command exits, or when consul-elect
// dies, however it dies (see shim_linux.go).
func startChild(argv, env []string, logger *zap.Logger) (*child, error) {
	cmd := exec.Command("/proc/self/exe", append([]string{shimCommand, strconv.Itoa(os.Getpid())}, argv...)...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Out of our process group, so that a terminal's Ctrl-C reaches
		// only us and we stop the command in order.
		Setpgid: true,
		// The shim is told when we die, even by SIGKILL.
		Pdeathsig: shimKillSignal,
	}
	c := &child{done: make(chan struct{}), logger: logger}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that forked the shim ends, not
		// when the process does: keep this goroutine on its thread, and the
		// thread alive, for as long as the shim runs.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		c.exitCode = exitCodeOf(cmd.ProcessState)
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	c.process, c.pid = cmd.Process, cmd.Process.Pid
	return c, nil
}

// terminate asks the shim to pass SIGTERM to the command's process group.
func (c *child) terminate() { _ = c.process.Signal(syscall.SIGTERM) }

// kill has the shim SIGKILL the command's whole tree, and waits until it is
// gone.
func (c *child) kill() {
	_ = c.process.Signal(shimKillSignal)
	timer := time.NewTimer(shimKillTimeout)
	defer timer.Stop()
	select {
	case <-c.done:
		return
	case <-timer.C:
	}
	c.logger.Error("the supervising shim did not end the command in time; killing the shim", zap.Int("shim_pid", c.pid))
	_ = c.process.Kill()
	<-c.done
}
