package main

import (
	"os"
	"os/exec"

	"go.uber.org/zap"
)

// Windows has no SIGTERM for a console-less process: stopping the command is
// TerminateProcess at once, and processes the command started are not
// reached. If consul-elect is killed, the command is not: run it under a
// service manager that ends the whole service (a job object).

func startChild(argv, env []string, logger *zap.Logger) (*child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{pid: cmd.Process.Pid, process: cmd.Process, done: make(chan struct{}), logger: logger}
	go func() {
		_ = cmd.Wait()
		c.exitCode = exitCodeOf(cmd.ProcessState)
		close(c.done)
	}()
	return c, nil
}

func (c *child) terminate() { _ = c.process.Kill() }

func (c *child) kill() {
	_ = c.process.Kill()
	<-c.done
}
