package main

import (
	"os"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// shimCommand is the hidden subcommand with which consul-elect re-executes
// itself to supervise a leader's command (Linux only):
//
//	consul-elect __shim PARENT_PID COMMAND [ARGS...]
const shimCommand = "__shim"

// child is the command of one term of leadership, as started by
// prepared.start.
type child struct {
	pid      int           // the command's
	process  *os.Process   // what consul-elect signals: the command, or on Linux its shim
	pidfd    *os.File      // Linux: the command's pidfd, from the shim; nil if none
	done     chan struct{} // closed once the command's whole tree has exited
	exitCode int           // the command's; valid once done is closed
	logger   *zap.Logger
	termOnce sync.Once
}

// sigterm asks the command to stop, once: stop and a stop signal may both
// ask.
func (c *child) sigterm() { c.termOnce.Do(c.terminate) }

// stop ends the command: SIGTERM, then SIGKILL after grace or at killBy,
// whichever comes first. If killBy has already passed (this process was
// frozen past it), SIGKILL at once: the command may no longer run at all. A
// zero killBy sets no limit. It returns once the command is gone.
func (c *child) stop(grace time.Duration, killBy time.Time) {
	if !killBy.IsZero() {
		left := time.Until(killBy)
		if left <= 0 {
			c.logger.Warn("the moment the command had to be gone by has passed (was consul-elect frozen?); killing it at once",
				zap.Time("deadline", killBy))
			c.kill()
			return
		}
		grace = min(grace, left)
	}
	c.sigterm()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-c.done:
		return
	case <-timer.C:
	}
	c.logger.Warn("the command did not exit after SIGTERM; killing it", zap.Duration("after", grace))
	c.kill()
}

// exitCodeOf is a process's exit code, or 128 + the signal that killed it,
// as a shell reports it.
func exitCodeOf(state *os.ProcessState) int {
	if status, ok := state.Sys().(syscall.WaitStatus); ok && status.Signaled() {
		return 128 + int(status.Signal())
	}
	return state.ExitCode()
}

// launcher starts the command of each term. It keeps what starts the next
// one prepared ahead of the term (prepareChild: on Linux the supervising
// shim, already running), so that becoming leader only has to start the
// command itself.
type launcher struct {
	argv   []string
	logger *zap.Logger

	mu   sync.Mutex
	next chan preparedChild // the preparation in flight, or done; nil: none
}

type preparedChild struct {
	p   *prepared
	err error
}

// prepare readies the next term's start in the background, unless that is
// done or under way.
func (l *launcher) prepare() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next != nil {
		return
	}
	next := make(chan preparedChild, 1)
	l.next = next
	go func() {
		p, err := prepareChild(l.argv, l.logger)
		next <- preparedChild{p, err}
	}()
}

// taken returns the start prepared ahead, waiting for it if it is under
// way; nil if none is.
func (l *launcher) taken() (*prepared, error) {
	l.mu.Lock()
	next := l.next
	l.next = nil
	l.mu.Unlock()
	if next == nil {
		return nil, nil
	}
	r := <-next
	return r.p, r.err
}

// start starts the command with vars added to consul-elect's environment,
// through the start prepared ahead if there is one. If that one is no longer
// usable (its shim was killed meanwhile), it tries once more with a fresh
// one.
func (l *launcher) start(vars []string) (*child, error) {
	p, err := l.taken()
	if p == nil && err == nil {
		if p, err = prepareChild(l.argv, l.logger); err != nil {
			return nil, err
		}
		return p.start(vars)
	}
	if err == nil {
		c, err := p.start(vars)
		if err == nil {
			return c, nil
		}
		l.logger.Warn("the command's supervisor started ahead is gone; starting another", zap.Error(err))
	}
	if p, err = prepareChild(l.argv, l.logger); err != nil {
		return nil, err
	}
	return p.start(vars)
}

// close drops the start prepared ahead, if any, once it is ready, and waits
// until it is gone.
func (l *launcher) close() {
	if p, _ := l.taken(); p != nil {
		p.close()
	}
}
