package main

import (
	"os"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// shimCommand is the hidden subcommand with which consul-elect re-executes
// itself to supervise a leader's command (Linux only):
//
//	consul-elect __shim PARENT_PID COMMAND [ARGS...]
const shimCommand = "__shim"

// child is the command of one term of leadership, as started by startChild.
type child struct {
	pid      int // of the process consul-elect started (on Linux, the shim)
	process  *os.Process
	done     chan struct{} // closed once the command's whole tree has exited
	exitCode int           // the command's; valid once done is closed
	logger   *zap.Logger
}

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
	c.terminate()
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
