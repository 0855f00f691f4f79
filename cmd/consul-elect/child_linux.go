package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
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
// A pipe and a socket connect them. On the pipe, the shim's fd 3,
// consul-elect writes the term's environment (each variable followed by a
// NUL, then one NUL more), or closes it to let the shim go without a term.
// On the socket, the shim's fd 4, the shim answers "started PID" with the
// command's pidfd (or "failed REASON"), then "exited CODE" once the
// command's whole tree is gone, one message each.
type prepared struct {
	process *os.Process
	control *os.File      // the write end of the shim's fd 3
	status  *net.UnixConn // our end of its fd 4
	gone    chan struct{} // closed once the shim has exited and been reaped
	state   *os.ProcessState
	logger  *zap.Logger
}

func prepareChild(argv []string, logger *zap.Logger) (*prepared, error) {
	controlR, controlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	status, statusW, err := statusSocket()
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
	p := &prepared{control: controlW, status: status, gone: make(chan struct{}), logger: logger}
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
		status.Close()
		return nil, err
	}
	p.process = cmd.Process
	return p, nil
}

// statusSocket is a connected pair of Unix sockets that keep the bounds of
// each message: ours, and the shim's end.
func statusSocket() (*net.UnixConn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "shim status")
	defer ours.Close() // FileConn has its own copy
	conn, err := net.FileConn(ours)
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	return conn.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "shim status"), nil
}

// start has the shim start the command with vars added to the environment,
// and returns once it has.
func (p *prepared) start(vars []string) (*child, error) {
	var msg []byte
	for _, v := range vars {
		if strings.IndexByte(v, 0) >= 0 {
			p.close()
			return nil, fmt.Errorf("the environment variable %q holds a NUL byte", v)
		}
		msg = append(append(msg, v...), 0)
	}
	_, err := p.control.Write(append(msg, 0))
	p.control.Close()
	if err != nil {
		p.close()
		return nil, fmt.Errorf("the supervising shim: %w", err)
	}
	word, arg, pidfd, err := p.next()
	switch {
	case err != nil:
		p.close()
		return nil, fmt.Errorf("the supervising shim: %w", err)
	case word == "failed":
		pidfd.Close()
		p.close()
		return nil, errors.New(arg)
	case word != "started":
		pidfd.Close()
		p.close()
		return nil, fmt.Errorf("the supervising shim said %q", word+" "+arg)
	}
	pid, _ := strconv.Atoi(arg)
	c := &child{pid: pid, process: p.process, pidfd: pidfd, done: make(chan struct{}), logger: p.logger}
	go func() {
		// The shim says when the tree is gone, before it exits itself; if
		// it dies first, its own exit says.
		word, arg, extra, err := p.next()
		extra.Close()
		if err == nil && word == "exited" {
			c.exitCode, _ = strconv.Atoi(arg)
		} else {
			<-p.gone
			c.exitCode = exitCodeOf(p.state)
		}
		p.status.Close()
		c.pidfd.Close()
		close(c.done)
	}()
	return c, nil
}

// next reads the shim's next status message, and the file it came with, if
// any (nil otherwise; closing nil is harmless).
func (p *prepared) next() (word, arg string, file *os.File, err error) {
	buf, oob := make([]byte, 4096), make([]byte, syscall.CmsgSpace(4))
	n, oobn, _, _, err := p.status.ReadMsgUnix(buf, oob)
	if err == nil && n == 0 {
		err = io.EOF // the shim is gone
	}
	if err != nil {
		return "", "", nil, err
	}
	file = receivedFile(oob[:oobn])
	word, arg, _ = strings.Cut(strings.TrimSuffix(string(buf[:n]), "\n"), " ")
	return word, arg, file, nil
}

// receivedFile is the descriptor passed in a message's control data, if any.
func receivedFile(oob []byte) *os.File {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var file *os.File
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if file == nil {
				syscall.CloseOnExec(fd)
				file = os.NewFile(uintptr(fd), "pidfd")
			} else {
				syscall.Close(fd)
			}
		}
	}
	return file
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
	p.status.Close()
}

// noGroupPidfd is set once the kernel refused pidfd_send_signal to a process
// group: the shim passes the signal on instead.
var noGroupPidfd atomic.Bool

// terminate sends SIGTERM to the command's process group: straight through
// the command's pidfd, which unlike a process group id can never come to
// name another group once the command's is gone, or, on a kernel that
// cannot, through the shim.
func (c *child) terminate() {
	if c.pidfd != nil && !noGroupPidfd.Load() {
		raw, err := c.pidfd.SyscallConn()
		if err == nil {
			// Control keeps the descriptor open while it runs: closed
			// meanwhile, its number could name another file.
			var sent error
			err = raw.Control(func(fd uintptr) {
				// PIDFD_SIGNAL_PROCESS_GROUP (Linux 6.9 and later): to the
				// process group the pidfd's process leads.
				sent = unix.PidfdSendSignal(int(fd), unix.SIGTERM, nil, unix.PIDFD_SIGNAL_PROCESS_GROUP)
			})
			err = cmp.Or(err, sent)
		}
		switch {
		case err == nil, errors.Is(err, syscall.ESRCH):
			return // sent, or the group is gone
		case errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.ENOSYS):
			noGroupPidfd.Store(true)
		}
	}
	_ = c.process.Signal(syscall.SIGTERM)
}

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
