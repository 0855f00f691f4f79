//go:build unix && !linux

package main

import (
	"errors"
	"os"
	"os/exec"
	"syscall"

	"go.uber.org/zap"
)

// Without Linux's Pdeathsig and subreapers, the command runs in a process
// group of its own that consul-elect signals. If consul-elect is killed with
// SIGKILL, the command is not: run it under a service manager that kills the
// whole service (launchd, a FreeBSD rc.d supervisor).

// start starts the command with vars added to consul-elect's environment.
func (p *prepared) start(vars []string) (*child, error) {
	argv, logger := p.argv, p.logger
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), vars...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{pid: cmd.Process.Pid, process: cmd.Process, done: make(chan struct{}), logger: logger}
	go func() {
		_ = cmd.Wait()
		c.exitCode = exitCodeOf(cmd.ProcessState)
		// Whatever the command left in its group goes with it. The group's
		// id cannot be reused while the group has members.
		_ = syscall.Kill(-c.pid, syscall.SIGKILL)
		close(c.done)
	}()
	return c, nil
}

func (c *child) terminate() { c.signalGroup(syscall.SIGTERM) }

func (c *child) kill() {
	c.signalGroup(syscall.SIGKILL)
	<-c.done
}

func (c *child) signalGroup(sig syscall.Signal) {
	if err := syscall.Kill(-c.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		c.logger.Warn("cannot signal the command", zap.Stringer("signal", sig), zap.Error(err))
	}
}
