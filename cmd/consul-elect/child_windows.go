package main

import (
	"os"
	"os/exec"
)

// Windows has no SIGTERM for a console-less process: stopping the command is
// TerminateProcess at once, and processes the command started are not
// reached. If consul-elect is killed, the command is not: run it under a
// service manager that ends the whole service (a job object).

// start starts the command with vars added to consul-elect's environment.
func (p *prepared) start(vars []string) (*child, error) {
	argv, logger := p.argv, p.logger
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), vars...)
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
