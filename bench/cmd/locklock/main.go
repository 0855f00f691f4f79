// Command locklock is the baseline of the CLI handover figure: a
// `consul-elect run` built on HashiCorp's api.Lock (through
// consul/reference), with the same contract for a planned end and nothing
// more. It is benchmark tooling, not a product:
//
//	locklock --address URL --key KEY [--ttl 3s] [--lock-delay 0s] [--kill-grace 300ms] -- COMMAND [ARGS...]
//
// It waits in Lock(); once it holds the lock it starts COMMAND directly, in a
// process group of its own, with Pdeathsig SIGKILL (no supervising shim:
// descendants that leave the group may outlive it). On SIGTERM or SIGINT it
// stops the command (SIGTERM to the group, SIGKILL --kill-grace later), then
// calls Unlock() and exits 0. When the lock is lost it kills the command and
// waits for the lock again; when the command exits on its own, it unlocks and
// exits with the command's code.
//
// Before each Lock() it writes "locklock: waiting for the lock" to stderr,
// "locklock: leading" once Lock() has returned and "locklock: command
// stopped" before a planned Unlock(), so that a harness can tell a standby
// from a leader and see where a handover's time goes.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/excalibur/consul-elect/consul/reference"
)

func main() {
	address := flag.String("address", "", "the agent's HTTP address, http://host:port (required)")
	key := flag.String("key", "", "the lock key (required)")
	ttl := flag.Duration("ttl", 3*time.Second, "session TTL")
	lockDelay := flag.Duration("lock-delay", 0, "session lock-delay (0 is sent as api.Lock's least, 1ms)")
	grace := flag.Duration("kill-grace", 300*time.Millisecond, "how long the command has after SIGTERM before SIGKILL")
	flag.Parse()
	if *address == "" || *key == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: locklock --address URL --key KEY [flags] -- COMMAND [ARGS...]")
		os.Exit(2)
	}
	os.Exit(run(*address, *key, *ttl, *lockDelay, *grace, flag.Args()))
}

func run(address, key string, ttl, lockDelay, grace time.Duration, argv []string) int {
	// Pdeathsig fires when the thread that forked the command ends: keep the
	// main goroutine, which forks, on its thread for the whole run.
	runtime.LockOSThread()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	client, err := reference.NewClient(reference.Config{Address: address})
	if err != nil {
		fmt.Fprintln(os.Stderr, "locklock:", err)
		return 1
	}
	defer client.Close()
	lock, err := client.NewLock(reference.LockOptions{Key: key, SessionTTL: ttl, LockDelay: lockDelay})
	if err != nil {
		fmt.Fprintln(os.Stderr, "locklock:", err)
		return 1
	}
	for {
		fmt.Fprintln(os.Stderr, "locklock: waiting for the lock")
		stop := make(chan struct{})
		type locked struct {
			lost <-chan struct{}
			err  error
		}
		result := make(chan locked, 1)
		go func() {
			lost, err := lock.Lock(stop)
			result <- locked{lost, err}
		}()
		var held locked
		select {
		case held = <-result:
		case <-signals:
			close(stop)
			client.Close() // ends the blocking query at once
			return 0
		}
		if held.err != nil {
			fmt.Fprintln(os.Stderr, "locklock: Lock:", held.err)
			return 1
		}
		fmt.Fprintln(os.Stderr, "locklock: leading")
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "locklock: starting the command:", err)
			_ = lock.Unlock()
			return 1
		}
		exited := make(chan int, 1)
		go func() {
			_ = cmd.Wait()
			exited <- cmd.ProcessState.ExitCode()
		}()
		select {
		case <-signals:
			stopGroup(cmd.Process.Pid, exited, grace)
			fmt.Fprintln(os.Stderr, "locklock: command stopped")
			if err := lock.Unlock(); err != nil && !errors.Is(err, reference.ErrClosed) {
				fmt.Fprintln(os.Stderr, "locklock: Unlock:", err)
			}
			return 0
		case code := <-exited:
			_ = lock.Unlock()
			return code
		case <-held.lost:
			fmt.Fprintln(os.Stderr, "locklock: lost the lock; killing the command")
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
}

// stopGroup sends SIGTERM to the command's process group, SIGKILL after
// grace, and returns once the command has exited.
func stopGroup(group int, exited <-chan int, grace time.Duration) {
	_ = syscall.Kill(-group, syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-exited:
		return
	case <-timer.C:
	}
	_ = syscall.Kill(-group, syscall.SIGKILL)
	<-exited
}
