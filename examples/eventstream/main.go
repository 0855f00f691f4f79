// Command eventstream runs the election engine as a top-level actor of your
// actor system and prints its events from the system's EventStream.
//
//	go run ./examples/eventstream
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
		fmt.Fprintln(os.Stderr, "eventstream:", err)
		os.Exit(1)
	}
}

// run campaigns for resource until ctx is done, printing every event.
func run(ctx context.Context, opts actors.Options, out io.Writer) error {
	props, err := actors.NewProps(opts) // checks opts; nothing is sent to Consul yet
	if err != nil {
		return err
	}
	system := actor.NewActorSystem(actors.WithZapLogger(opts.Logger))
	defer system.Shutdown()

	// Subscribe before spawning so that no event is missed. The engine
	// publishes from a goroutine of its own, so a slow subscriber delays
	// other subscribers, never a leader's step-down.
	subscription := system.EventStream.Subscribe(func(evt any) { printEvent(out, evt) })
	defer system.EventStream.Unsubscribe(subscription)

	election := system.Root.Spawn(props)
	system.Root.Send(election, &messages.Campaign{Resource: resource})

	<-ctx.Done()
	if res, err := system.Root.RequestFuture(election, &messages.GetState{Resource: resource}, 5*time.Second).Result(); err == nil {
		state := res.(*messages.State)
		fmt.Fprintf(out, "state at shutdown: leader %t, token %d\n", state.IsLeader, state.FencingToken)
	}
	// Stop releases the key (a standby takes over at once) and destroys the
	// session, answers Stopped, then stops the root. Wait for both before
	// shutting the system down.
	_, err = system.Root.RequestFuture(election, &messages.Stop{}, 10*time.Second).Result()
	_ = system.Root.PoisonFuture(election).Wait()
	if err != nil {
		return fmt.Errorf("stopping the election: %w", err)
	}
	return nil
}

// printEvent prints the engine's events; the EventStream also carries
// protoactor's own (dead letters, supervision), which it ignores.
func printEvent(out io.Writer, evt any) {
	switch e := evt.(type) {
	case messages.LeadershipAcquired:
		fmt.Fprintf(out, "acquired %s: token %d, session %s\n", e.Resource, e.FencingToken, e.Session)
	case messages.LeadershipLost:
		fmt.Fprintf(out, "lost %s: %s (token %d)\n", e.Resource, e.Reason, e.FencingToken)
	case messages.LeaderChanged:
		if e.LeaderID == "" {
			fmt.Fprintf(out, "leader of %s: nobody\n", e.Resource)
		} else {
			fmt.Fprintf(out, "leader of %s: %s (token %d)\n", e.Resource, e.LeaderID, e.FencingToken)
		}
	case messages.ElectionError:
		fmt.Fprintf(out, "error: %s %s: %v\n", e.Op, e.Resource, e.Err)
	}
}
