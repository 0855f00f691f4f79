//go:build unix

// Command apicandidate is a chaos candidate built on the Go API: one
// consulelect.Election whose Run does, while this candidate leads, what
// chaoschild does under `consul-elect run` (package chaos): it appends
// "start ID TOKEN UNIXNANOS" to the shared log $CHAOS_LOG, a "beat" every
// $CHAOS_BEAT (default 2ms) and "stop" when the term ends, and meanwhile
// writes to the fenced store in $CHAOS_STORE with the term's FencingToken.
//
// Work and engine share one process: when the leadership is lost, Run's
// context is cancelled and the work stops at once. SIGTERM, SIGINT, SIGHUP
// and SIGQUIT stop the election as an operator's stop does: the work
// drains, the key is released, the session destroyed, and it exits 0.
//
//	apicandidate -address http://127.0.0.1:8500 -prefix chaos -resource r -id c5 -ttl 3s -lock-delay 1500ms -margin 300ms
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/chaos"
	"go.uber.org/zap"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "apicandidate:", err)
		os.Exit(1)
	}
}

func run() error {
	opts := consulelect.DefaultOptions()
	var resource string
	flag.StringVar(&opts.ConsulAddress, "address", "", "the agent's address")
	flag.StringVar(&opts.KeyPrefix, "prefix", "chaos", "key prefix")
	flag.StringVar(&resource, "resource", "r", "the resource to lead")
	flag.StringVar(&opts.CandidateID, "id", "", "candidate id")
	flag.DurationVar(&opts.SessionTTL, "ttl", 3*time.Second, "session TTL")
	flag.DurationVar(&opts.LockDelay, "lock-delay", 1500*time.Millisecond, "lock-delay")
	// The work stops within milliseconds; the margin is the CLI's kill
	// grace, so that both kinds of candidates step down at the same point.
	flag.DurationVar(&opts.SelfFenceMargin, "margin", 300*time.Millisecond, "self-fence margin")
	flag.Parse()
	if opts.CandidateID == "" {
		return errors.New("-id is required")
	}
	beatEvery := 2 * time.Millisecond
	if s := os.Getenv("CHAOS_BEAT"); s != "" {
		var err error
		if beatEvery, err = time.ParseDuration(s); err != nil || beatEvery <= 0 {
			return fmt.Errorf("CHAOS_BEAT %q: want a positive duration", s)
		}
	}
	logger, err := zap.NewDevelopment()
	if err != nil {
		return err
	}
	defer func() { _ = logger.Sync() }()
	opts.Logger = logger
	opts.DrainTimeout = time.Second

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	election, err := consulelect.Start(startCtx, opts)
	cancel()
	if err != nil {
		return err
	}
	w := work{logPath: os.Getenv("CHAOS_LOG"), storeDir: os.Getenv("CHAOS_STORE"), beatEvery: beatEvery}
	runErr := election.Run(ctx, resource, w.lead)
	stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := election.Stop(stopCtx); err != nil {
		return err
	}
	if errors.Is(runErr, context.Canceled) && ctx.Err() != nil {
		return nil // stopped by a signal
	}
	return runErr
}

// work is what the leader does: log its term and write through the fenced
// store until the term ends.
type work struct {
	logPath, storeDir string
	beatEvery         time.Duration
}

// lead is Run's function: it returns only when the term is over (ctx done),
// after its writers have stopped, so that the key is released after them.
func (w work) lead(ctx context.Context, lead *consulelect.Leadership) error {
	l, err := chaos.OpenLeaderLog(w.logPath, lead.CandidateID, lead.FencingToken)
	if err != nil {
		return err
	}
	defer l.Close()
	store, err := chaos.OpenStore(w.storeDir)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := l.Write(chaos.Start); err != nil {
		return err
	}
	var writers sync.WaitGroup
	writers.Add(2)
	go func() {
		defer writers.Done()
		tick := time.NewTicker(w.beatEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if l.Write(chaos.Beat) != nil {
					return
				}
			}
		}
	}()
	go func() {
		defer writers.Done()
		for ctx.Err() == nil {
			if _, err := store.Write(lead.CandidateID, lead.FencingToken); err != nil {
				return
			}
			time.Sleep(w.beatEvery)
		}
	}()
	<-ctx.Done()
	writers.Wait()
	return l.Write(chaos.Stop)
}
