package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// shimKillTimeout is how long the shim may take to kill the command's tree
// before consul-elect kills the shim itself (the command then dies by its
// Pdeathsig, though descendants that left its process group may not).
const shimKillTimeout = 2 * time.Second

// prepared is a supervising shim started ahead of a term: consul-elect
// re-executed (/proc/self/exe, the very binary running even if it was
// replaced on disk), waiting for the word to start the command. The shim
// starts the command in a process group of its own and kills the whole tree
// when told to, when the command exits, or when consul-elect dies, however it
// dies (see shim_linux.go). Starting it ahead takes the Go runtime's start-up
// out of the handover: a new leader only has the shim fork the command.
//
// Two pipes connect them: on the shim's fd 3, consul-elect writes the
// term's environment (one JSON line), or closes it to let the shim go
// without a term; on its fd 4, the shim answers "started PID" (or "failed
// REASON"), then "exited CODE" once the command's whole tree is gone.
type prepared struct {
	process *os.Process
	control *os.File      // the write end of the shim's fd 3
	status  *bufio.Reader // the read end of its fd 4
	statusF *os.File
	gone    chan struct{} // closed once the shim has exited and been reaped
	state   *os.ProcessState
	logger  *zap.Logger
}

func prepareChild(argv []string, logger *zap.Logger) (*prepared, error) {
	controlR, controlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		controlR.Close()
		controlW.Close()
		return nil, err
	}
	cmd := exec.Command("/proc/self/exe", append([]string{shimCommand, strconv.Itoa(os.Getpid())}, argv...)...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{controlR, statusW} // fds 3 and 4
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Out of our process group, so that a terminal's Ctrl-C reaches
		// only us and we stop the command in order.
		Setpgid: true,
		// The shim is told when we die, even by SIGKILL.
		Pdeathsig: shimKillSignal,
	}
	p := &prepared{control: controlW, status: bufio.NewReader(statusR), statusF: statusR, gone: make(chan struct{}), logger: logger}
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
		p.state = cmd.ProcessState
		close(p.gone)
	}()
	err = <-started
	// The shim's ends are the shim's alone: its death closes them.
	controlR.Close()
	statusW.Close()
	if err != nil {
		controlW.Close()
		statusR.Close()
		return nil, err
	}
	p.process = cmd.Process
	return p, nil
}

// start has the shim start the command with vars added to the environment,
// and returns once it has.
func (p *prepared) start(vars []string) (*child, error) {
	msg, err := json.Marshal(vars)
	if err != nil {
		p.close()
		return nil, err
	}
	_, err = p.control.Write(append(msg, '\n'))
	p.control.Close()
	if err != nil {
		p.close()
		return nil, fmt.Errorf("the supervising shim: %w", err)
	}
	word, arg, err := p.next()
	switch {
	case err != nil:
		p.close()
		return nil, fmt.Errorf("the supervising shim: %w", err)
	case word == "failed":
		p.close()
		return nil, errors.New(arg)
	case word != "started":
		p.close()
		return nil, fmt.Errorf("the supervising shim said %q", word+" "+arg)
	}
	pid, _ := strconv.Atoi(arg)
	c := &child{pid: pid, process: p.process, done: make(chan struct{}), logger: p.logger}
	go func() {
		// The shim says when the tree is gone, before it exits itself; if
		// it dies first, its own exit says.
		word, arg, err := p.next()
		if err == nil && word == "exited" {
			c.exitCode, _ = strconv.Atoi(arg)
		} else {
			<-p.gone
			c.exitCode = exitCodeOf(p.state)
		}
		p.statusF.Close()
		close(c.done)
	}()
	return c, nil
}

// next reads the shim's next status line.
func (p *prepared) next() (word, arg string, err error) {
	line, err := p.status.ReadString('\n')
	if err != nil {
		return "", "", err // io.EOF: the shim is gone
	}
	word, arg, _ = strings.Cut(strings.TrimSuffix(line, "\n"), " ")
	return word, arg, nil
}

// close lets an unused shim go and waits until it is gone.
func (p *prepared) close() {
	p.control.Close()
	select {
	case <-p.gone:
	case <-time.After(shimKillTimeout):
		_ = p.process.Kill()
		<-p.gone
	}
	p.statusF.Close()
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
	c.logger.Error("the supervising shim did not end the command in time; killing the shim", zap.Int("shim_pid", c.process.Pid))
	_ = c.process.Kill()
	<-c.done
}
