// Command goapi uses the plain Go API: campaign, wait for leadership, work
// until it ends, and hand it over (Resign) when the work fails.
//
//	go run ./examples/goapi
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	consulelect "github.com/excalibur/consul-elect"
)

const resource = "report-generator"

// resignHoldOff is how long a candidate that resigned stays out of the
// race: long enough for a standby to see the key free and take it.
const resignHoldOff = time.Second

// Work is the leader's job. It runs until ctx is done, which happens when
// leadership is lost or the program stops; returning early makes this
// candidate resign, so that another takes over.
type Work func(ctx context.Context, fencingToken uint64) error

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := consulelect.DefaultOptions()
	opts.ConsulAddress = os.Getenv("CONSUL_HTTP_ADDR") // empty: http://localhost:8500
	if err := run(ctx, opts, os.Stdout, generateReports(os.Stdout)); err != nil {
		fmt.Fprintln(os.Stderr, "goapi:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, opts consulelect.Options, out io.Writer, work Work) (err error) {
	election, err := consulelect.Start(ctx, opts) // fails at once if Consul is unreachable
	if err != nil {
		return err
	}
	defer func() {
		// Stop releases the key, so a standby takes over without waiting
		// for the session to expire. ctx is done by now: use another.
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = errors.Join(err, election.Stop(stopCtx))
	}()
	if err := election.Campaign(resource, nil); err != nil {
		return err
	}
	for {
		lead, err := election.AwaitLeadership(ctx, resource)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return err
		}
		fmt.Fprintf(out, "leading %s with fencing token %d\n", resource, lead.FencingToken)

		// lead.Context ends with the leadership, ctx with the program: the
		// work must stop at whichever ends first.
		workCtx, cancel := context.WithCancel(ctx)
		stopCancelling := context.AfterFunc(lead.Context, cancel)
		err = work(workCtx, lead.FencingToken)
		stopCancelling()
		cancel()

		switch {
		case ctx.Err() != nil:
			return nil // the deferred Stop releases the key
		case lead.Context.Err() != nil:
			fmt.Fprintf(out, "lost %s; campaigning again\n", resource)
		default:
			fmt.Fprintf(out, "work failed (%v); resigning %s\n", err, resource)
			if err := election.Resign(resource, resignHoldOff); err != nil {
				return err
			}
			// Until the engine has processed the resignation,
			// AwaitLeadership would return this same leadership.
			select {
			case <-lead.Context.Done():
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// generateReports is a stand-in for your work: it reports every second.
func generateReports(out io.Writer) Work {
	return func(ctx context.Context, fencingToken uint64) error {
		ticker := time.NewTicker(time.Second)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-ticker.C:
				fmt.Fprintf(out, "generating a report (token %d)\n", fencingToken)
			}
		}
	}
}
