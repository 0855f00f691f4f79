package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/devconsul"
	"github.com/excalibur/consul-elect/messages"
	"go.uber.org/zap"
)

const demoSynopsis = "consul-elect demo [--log-level LEVEL] [--log-format FORMAT]"

const (
	demoResource = "demo"
	// A short TTL and lock-delay keep the demo under a minute; production
	// defaults are 30s and 15s.
	demoTTL       = 5 * time.Second
	demoLockDelay = time.Second
	// demoTimeout bounds everything after the agent is up.
	demoTimeout = 45 * time.Second
	// demoPause lets a reader follow each step.
	demoPause = time.Second
)

var demoCandidates = []string{"alpha", "bravo", "charlie"}

func demoCommand(env *cli, args []string) error {
	var f logFlags
	fs := newFlagSet("demo")
	f.register(fs, "error") // the demo tells its own story; logs are for trouble
	if err := parseFlags(env, fs, demoSynopsis, args); err != nil {
		return err
	}
	if err := noArgs(fs.Args()); err != nil {
		return err
	}
	if err := f.validate(); err != nil {
		return err
	}
	logger := f.newLogger(env.stderr)
	defer func() { _ = logger.Sync() }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	out := env.stdout
	// Never an agent found running: it could be a production one.
	fmt.Fprintln(out, "Starting a Consul dev agent of our own on free loopback ports…")
	agent, err := devconsul.Start(ctx, devconsul.Config{}) // reports build progress on stderr when it must build
	if err != nil {
		return fmt.Errorf("starting Consul: %w", err)
	}
	defer func() {
		fmt.Fprintln(out, "Stopping the Consul agent.")
		if err := agent.Stop(); err != nil {
			logger.Warn("stopping the Consul agent", zap.Error(err))
		}
	}()
	fmt.Fprintf(out, "Consul %s is up at %s.\n\n", devconsul.Version(), agent.URL())

	client, err := consul.NewClient(consul.Config{Address: agent.URL()})
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	d := &demo{out: out, client: client, events: make(chan candidateEvent), quit: make(chan struct{})}
	defer d.stop()
	if err := d.start(ctx, agent.URL(), logger); err != nil {
		return err
	}
	return d.play(ctx)
}

// demo is three candidates, each an engine with its own session, electing
// one resource.
type demo struct {
	out       io.Writer
	client    *consul.Client
	elections map[string]*consulelect.Election
	events    chan candidateEvent // every candidate's events, merged
	quit      chan struct{}       // closed when nobody reads events any more
	forwards  sync.WaitGroup

	leader  string
	session string
	token   uint64
}

type candidateEvent struct {
	candidate string
	event     any
}

func (d *demo) start(ctx context.Context, address string, logger *zap.Logger) error {
	d.elections = map[string]*consulelect.Election{}
	for _, name := range demoCandidates {
		opts := actors.DefaultOptions()
		opts.ConsulAddress = address
		opts.SessionTTL = demoTTL
		opts.LockDelay = demoLockDelay
		opts.CandidateID = name
		opts.Logger = logger
		e, err := consulelect.Start(ctx, opts)
		if err != nil {
			return fmt.Errorf("starting candidate %s: %w", name, err)
		}
		d.elections[name] = e
		events := e.Events()
		d.forwards.Add(1)
		go func() {
			defer d.forwards.Done()
			for evt := range events {
				select {
				case d.events <- candidateEvent{candidate: name, event: evt}:
				case <-d.quit: // keep draining so that the engine's queue can close
				}
			}
		}()
	}
	fmt.Fprintf(d.out, "Three candidates, %s, %s and %s, each with its own Consul session (TTL %s, lock-delay %s), campaign for %q.\n",
		demoCandidates[0], demoCandidates[1], demoCandidates[2], demoTTL, demoLockDelay, demoResource)
	for _, name := range demoCandidates {
		if err := d.elections[name].Campaign(demoResource, nil); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) play(ctx context.Context) error {
	if _, err := d.awaitNewLeader(ctx); err != nil {
		return err
	}
	d.printBoard()
	pause(ctx)

	fmt.Fprintf(d.out, "\n1. Destroying %s's session in Consul, as if its node had died…\n", d.leader)
	began := time.Now()
	if err := d.client.DestroySession(ctx, d.session); err != nil {
		return err
	}
	acquiredAt, err := d.awaitNewLeader(ctx)
	if err != nil {
		return err
	}
	sessionFailover := acquiredAt.Sub(began).Round(time.Millisecond)
	fmt.Fprintf(d.out, "   %s leads after %s: Consul keeps a dead session's keys locked for its lock-delay (%s).\n",
		d.leader, sessionFailover, demoLockDelay)
	d.printBoard()
	pause(ctx)

	fmt.Fprintf(d.out, "\n2. %s resigns…\n", d.leader)
	began = time.Now()
	if err := d.elections[d.leader].Resign(demoResource, demoTTL); err != nil {
		return err
	}
	if acquiredAt, err = d.awaitNewLeader(ctx); err != nil {
		return err
	}
	resignFailover := acquiredAt.Sub(began).Round(time.Millisecond)
	fmt.Fprintf(d.out, "   %s leads after %s: a resignation releases the key at once, without lock-delay.\n",
		d.leader, resignFailover)
	d.printBoard()

	fmt.Fprintf(d.out, "\nFailover times: session destroyed %s, leader resigned %s.\n", sessionFailover, resignFailover)
	return nil
}

// awaitNewLeader shows what happens until a candidate starts a new term,
// and returns when it did.
func (d *demo) awaitNewLeader(ctx context.Context) (time.Time, error) {
	for {
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("waiting for a new leader: %w", ctx.Err())
		case ce := <-d.events:
			switch m := ce.event.(type) {
			case messages.LeadershipLost:
				fmt.Fprintf(d.out, "   %s is no longer leader (%s).\n", ce.candidate, m.Reason)
			case messages.LeadershipAcquired:
				if m.Session == d.session {
					continue
				}
				d.leader, d.session, d.token = ce.candidate, m.Session, m.FencingToken
				return m.At, nil
			}
		}
	}
}

func (d *demo) printBoard() {
	for _, name := range demoCandidates {
		if name == d.leader {
			fmt.Fprintf(d.out, "   ● %-8s leader    fencing token %d\n", name, d.token)
		} else {
			fmt.Fprintf(d.out, "   ○ %-8s follower\n", name)
		}
	}
}

// stop stops every candidate: each releases what it holds and destroys its
// session.
func (d *demo) stop() {
	close(d.quit)
	var stopping sync.WaitGroup
	for _, e := range d.elections {
		stopping.Add(1)
		go func() {
			defer stopping.Done()
			ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			_ = e.Stop(ctx)
		}()
	}
	stopping.Wait()
	d.forwards.Wait()
	fmt.Fprintln(d.out, "\nStopped the candidates.")
}

func pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(demoPause):
	}
}
