// Command embedded runs the election engine as a child of your own
// supervisor actor, which runs a singleton worker only while this candidate
// leads.
//
//	go run ./examples/embedded
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/messages"
)

const resource = "report-generator"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := actors.DefaultOptions()
	opts.ConsulAddress = os.Getenv("CONSUL_HTTP_ADDR") // empty: http://localhost:8500
	if err := run(ctx, opts, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "embedded:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, opts actors.Options, out io.Writer) error {
	election, err := actors.NewProps(opts)
	if err != nil {
		return err
	}
	system := actor.NewActorSystem(actors.WithZapLogger(opts.Logger))
	defer system.Shutdown()
	app := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &supervisor{election: election, out: out}
	}))
	<-ctx.Done()
	// Stop the election gracefully first (it releases the key, so a standby
	// takes over at once), then the supervisor and what is left under it.
	_, err = system.Root.RequestFuture(app, &messages.Stop{}, 10*time.Second).Result()
	_ = system.Root.PoisonFuture(app).Wait()
	return err
}

// supervisor is your application's actor. The election is its child, and so
// is the worker, which runs only while this candidate leads. If either fails,
// the supervisor strategy of this actor's Props decides (here protoactor's
// default: restart it).
type supervisor struct {
	election         *actor.Props
	out              io.Writer
	electionPID      *actor.PID
	worker           *actor.PID
	leadershipEvents *eventstream.Subscription
}

func (s *supervisor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		// EventStream subscribers run on the publisher's goroutine and must
		// not touch c: this one only forwards to our mailbox.
		system, self := c.ActorSystem(), c.Self()
		s.leadershipEvents = system.EventStream.Subscribe(func(evt any) {
			switch evt.(type) {
			case messages.LeadershipAcquired, messages.LeadershipLost:
				system.Root.Send(self, evt)
			}
		})
		s.electionPID = c.Spawn(s.election)
		c.Send(s.electionPID, &messages.Campaign{Resource: resource})
	case messages.LeadershipAcquired:
		fmt.Fprintf(s.out, "acquired %s (token %d)\n", m.Resource, m.FencingToken)
		s.worker = c.Spawn(actor.PropsFromProducer(func() actor.Actor { return &worker{token: m.FencingToken, out: s.out} }))
	case messages.LeadershipLost:
		fmt.Fprintf(s.out, "lost %s (token %d): %s\n", m.Resource, m.FencingToken, m.Reason)
		if s.worker != nil {
			c.Stop(s.worker)
			s.worker = nil
		}
	case *messages.Stop:
		c.Forward(s.electionPID) // the election answers our sender with Stopped
	case *actor.Stopping, *actor.Restarting:
		c.ActorSystem().EventStream.Unsubscribe(s.leadershipEvents)
	}
}

// worker is the singleton: it does its job every second while it lives.
type worker struct {
	token uint64
	out   io.Writer
	next  *time.Timer
}

type tick struct{}

func (w *worker) Receive(c actor.Context) {
	switch c.Message().(type) {
	case *actor.Started:
		fmt.Fprintf(w.out, "worker started (token %d)\n", w.token)
		w.schedule(c)
	case tick:
		fmt.Fprintf(w.out, "worker: generating a report (token %d)\n", w.token)
		w.schedule(c)
	case *actor.Stopping:
		w.next.Stop()
		fmt.Fprintf(w.out, "worker stopped (token %d)\n", w.token)
	}
}

// schedule sends the next tick from a timer's goroutine, which must not use c.
func (w *worker) schedule(c actor.Context) {
	system, self := c.ActorSystem(), c.Self()
	w.next = time.AfterFunc(time.Second, func() { system.Root.Send(self, tick{}) })
}
