// Command embedded runs the election engine as a child of your own actor,
// with a singleton worker that runs only while this candidate leads: the
// election spawns it when a term starts and stops it when the term ends (on
// Ctrl-C, before releasing the key, so the standby's worker starts only after
// this one has stopped).
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
	// Your application's actor: the election is its child, supervised by it.
	app := system.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		switch c.Message().(type) {
		case *actor.Started:
			worker := actor.PropsFromProducer(func() actor.Actor { return &reporter{out: out} })
			c.Send(c.Spawn(election), &messages.Campaign{Resource: resource, Worker: worker})
		case *messages.Stop:
			c.Forward(c.Children()[0]) // the election answers our sender with Stopped
		}
	}))
	<-ctx.Done()
	// A graceful stop: the worker stops, then the key is released.
	_, err = system.Root.RequestFuture(app, &messages.Stop{}, 20*time.Second).Result()
	_ = system.Root.PoisonFuture(app).Wait()
	return err
}

// reporter is the singleton worker: it does its job every second while it lives.
type reporter struct {
	out   io.Writer
	token uint64
	next  *time.Timer
}

type tick struct{}

func (r *reporter) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case messages.LeadershipAcquired: // right after Started, once per term
		r.token = m.FencingToken
		fmt.Fprintf(r.out, "worker started (token %d)\n", r.token)
		r.schedule(c)
	case tick:
		fmt.Fprintf(r.out, "worker: generating a report (token %d)\n", r.token)
		r.schedule(c)
	case *actor.Stopping:
		if r.next != nil {
			r.next.Stop()
		}
		fmt.Fprintf(r.out, "worker stopped (token %d)\n", r.token)
	}
}

// schedule sends the next tick from a timer's goroutine, which must not use c.
func (r *reporter) schedule(c actor.Context) {
	system, self := c.ActorSystem(), c.Self()
	r.next = time.AfterFunc(time.Second, func() { system.Root.Send(self, tick{}) })
}
