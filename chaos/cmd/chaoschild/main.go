//go:build unix

// Command chaoschild is the leader's command in the chaos suite (package
// chaos). consul-elect run starts it when its candidate becomes leader.
//
// It appends "start ID TOKEN UNIXNANOS" to the shared log $CHAOS_LOG, then a
// "beat" line every $CHAOS_BEAT (default 2ms), and "stop" when it gets
// SIGTERM. Meanwhile it writes to the fenced store in $CHAOS_STORE as fast as
// the store lets it, with its fencing token. Beats and writes run apart, so
// that a store whose lock another (frozen) writer holds does not make this
// leader look dead in the log.
//
// With CHAOS_IGNORE_TERM=1 it ignores SIGTERM, as a command slow to stop
// does: it runs until consul-elect's SIGKILL, a kill grace later.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/excalibur/consul-elect/chaos"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chaoschild:", err)
		os.Exit(1)
	}
}

func run() error {
	id := os.Getenv("CONSUL_ELECT_ID")
	token, err := strconv.ParseUint(os.Getenv("CONSUL_ELECT_FENCING_TOKEN"), 10, 64)
	if err != nil || id == "" {
		return fmt.Errorf("CONSUL_ELECT_ID %q and CONSUL_ELECT_FENCING_TOKEN %q: not started by consul-elect run", id, os.Getenv("CONSUL_ELECT_FENCING_TOKEN"))
	}
	beatEvery := 2 * time.Millisecond
	if s := os.Getenv("CHAOS_BEAT"); s != "" {
		if beatEvery, err = time.ParseDuration(s); err != nil || beatEvery <= 0 {
			return fmt.Errorf("CHAOS_BEAT %q: want a positive duration", s)
		}
	}
	// Listen before the first line, so that a SIGTERM right after it is
	// answered with a stop line rather than by dying.
	terms := make(chan os.Signal, 1)
	if os.Getenv("CHAOS_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
	} else {
		signal.Notify(terms, syscall.SIGTERM, syscall.SIGINT)
	}

	l, err := chaos.OpenLeaderLog(os.Getenv("CHAOS_LOG"), id, token)
	if err != nil {
		return err
	}
	store, err := chaos.OpenStore(os.Getenv("CHAOS_STORE"))
	if err != nil {
		return err
	}
	if err := l.Write(chaos.Start); err != nil {
		return err
	}

	failed := make(chan error, 2)
	go func() {
		tick := time.NewTicker(beatEvery)
		defer tick.Stop()
		for range tick.C {
			if err := l.Write(chaos.Beat); err != nil {
				failed <- err
				return
			}
		}
	}()
	go func() {
		for {
			if _, err := store.Write(id, token); err != nil {
				failed <- err
				return
			}
			time.Sleep(beatEvery)
		}
	}()

	select {
	case <-terms:
		return l.Write(chaos.Stop)
	case err := <-failed:
		return err
	}
}
