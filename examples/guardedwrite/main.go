// Command guardedwrite shows fencing: the leader writes a Consul key only
// while it still holds the lock, checked by Consul in the same transaction
// as the write. After the lock is lost, the write is refused, even if the
// leader has not noticed yet.
//
//	go run ./examples/guardedwrite
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
	"github.com/excalibur/consul-elect/consul"
)

const (
	resource = "report-writer"
	// reportKey is the data the leader writes; keep it outside KeyPrefix.
	reportKey = "excalibur/examples/guardedwrite/report"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := consulelect.DefaultOptions()
	opts.ConsulAddress = os.Getenv("CONSUL_HTTP_ADDR") // empty: http://localhost:8500
	if err := run(ctx, opts, reportKey, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "guardedwrite:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, opts consulelect.Options, reportKey string, out io.Writer) (err error) {
	// Only the demo's "operator" needs a client of its own: it destroys the
	// leader's session behind its back. Guarded writes go through the election.
	client, err := consul.NewClient(consul.Config{Address: opts.ConsulAddress, Datacenter: opts.Datacenter,
		Token: opts.Token, TokenFile: opts.TokenFile, TLS: opts.TLS})
	if err != nil {
		return err
	}
	defer client.Close()
	election, err := consulelect.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = errors.Join(err, election.Stop(stopCtx))
	}()
	if err := election.Campaign(resource, nil); err != nil {
		return err
	}
	lead, err := election.AwaitLeadership(ctx, resource)
	if err != nil {
		return nil // stopped (ctx done) before leading
	}

	for n := 1; ; n++ {
		if n == 4 {
			// Demo only: lose the lock behind the leader's back, as when
			// Consul expires the session of a leader that was frozen (GC
			// pause, VM suspend) past its TTL.
			if err := client.DestroySession(ctx, lead.Session); err != nil {
				return err
			}
			fmt.Fprintln(out, "session destroyed behind the leader's back")
		}
		// A real leader also stops writing once lead.Context is done; this one
		// writes regardless, to show that Consul itself refuses: the write is
		// checked against the lock's session and this term's fencing token.
		report := fmt.Sprintf("report #%d by the leader with fencing token %d", n, lead.FencingToken)
		err := election.GuardedPut(ctx, lead, reportKey, []byte(report))
		if errors.Is(err, consul.ErrLockLost) {
			fmt.Fprintf(out, "write #%d refused: %v\n", n, err)
			break
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "wrote %q\n", report)
	}

	select {
	case <-lead.Context.Done():
		fmt.Fprintln(out, "the engine saw it too: leadership lost")
	case <-ctx.Done():
	}
	return nil
}
