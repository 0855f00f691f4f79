// Command goapi uses the plain Go API: Run works only while leading, and
// the work hands leadership over (Resign) when it fails.
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
		// Stop destroys the session. ctx is done by now: use another.
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = errors.Join(err, election.Stop(stopCtx))
	}()
	// Run calls the function each time this candidate leads, and releases
	// the key, when the program stops, only after the function has returned.
	err = election.Run(ctx, resource, func(leading context.Context, lead *consulelect.Leadership) error {
		fmt.Fprintf(out, "leading %s with fencing token %d\n", resource, lead.FencingToken)
		err := work(leading, lead.FencingToken)
		switch {
		case ctx.Err() != nil: // the program stops
		case leading.Err() != nil:
			fmt.Fprintf(out, "lost %s; campaigning again\n", resource)
		default:
			fmt.Fprintf(out, "work failed (%v); resigning %s\n", err, resource)
			return election.Resign(resource, resignHoldOff)
		}
		return nil
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
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
