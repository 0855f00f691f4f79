package consulelect_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/devconsul"
	"github.com/excalibur/consul-elect/messages"
)

var agent *devconsul.Agent

func TestMain(m *testing.M) { devconsul.Main(m, &agent) }

func options(t *testing.T, id string) consulelect.Options {
	opts := consulelect.DefaultOptions()
	opts.ConsulAddress = agent.URL()
	opts.KeyPrefix = "goapi/" + strings.ReplaceAll(t.Name(), "/", "-")
	opts.SessionTTL = 2 * time.Second
	opts.LockDelay = 0
	opts.CandidateID = id
	return opts
}

func start(t *testing.T, opts consulelect.Options) *consulelect.Election {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := consulelect.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop(context.Background()) })
	return e
}

func TestLeadershipContextIsCancelledWhenLeadershipIsLost(t *testing.T) {
	e := start(t, options(t, "alpha"))
	events := e.Events()
	defer func() {
		go func() {
			for range events {
			}
		}()
	}() // closed by Stop
	if err := e.Campaign("billing", map[string]string{"version": "1.2.3"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	lead, err := e.AwaitLeadership(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	client, err := consul.NewClient(consul.Config{Address: agent.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.DestroySession(ctx, lead.Session); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lead.Context.Done():
	case <-ctx.Done():
		t.Fatal("the leadership context was not cancelled after the session was destroyed")
	}
	if _, still := e.Leader("billing"); still {
		// It may already lead again on a new session, but not on the old one.
		if l, _ := e.Leader("billing"); l.Session == lead.Session {
			t.Fatal("still leads on the destroyed session")
		}
	}
	for evt := range events {
		if lost, ok := evt.(messages.LeadershipLost); ok {
			if lost.Reason != messages.ReasonSessionInvalidated || lost.FencingToken != lead.FencingToken {
				t.Fatalf("lost %+v; want session invalidated for token %d", lost, lead.FencingToken)
			}
			break
		}
	}
}

// TestEventsChannelLosesNothingForASlowReader makes leadership move many times
// while nobody reads, then reads: every acquisition has its loss, in order.
func TestEventsChannelLosesNothingForASlowReader(t *testing.T) {
	a := start(t, options(t, "a"))
	events := a.Events()
	b := start(t, options(t, "b"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// a leads first: each resigns in turn from there.
	if err := a.Campaign("ping-pong", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AwaitLeadership(ctx, "ping-pong"); err != nil {
		t.Fatal(err)
	}
	if err := b.Campaign("ping-pong", nil); err != nil {
		t.Fatal(err)
	}
	const rounds = 5
	for i := 0; i < rounds; i++ {
		for _, e := range []*consulelect.Election{a, b} { // each resigns in turn
			lead, err := e.AwaitLeadership(ctx, "ping-pong")
			if err != nil {
				sa, errA := a.State(context.Background(), "ping-pong")
				sb, errB := b.State(context.Background(), "ping-pong")
				t.Fatalf("round %d: %v\na: %+v %v\nb: %+v %v", i, err, sa, errA, sb, errB)
			}
			// A hold-off long enough for the other to take over, even on a
			// loaded machine.
			if err := e.Resign("ping-pong", time.Second); err != nil {
				t.Fatal(err)
			}
			<-lead.Context.Done()
		}
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	acquired, lost, leading := 0, 0, false
	for evt := range events { // closed after Stop, once drained
		switch evt.(type) {
		case messages.LeadershipAcquired:
			if leading {
				t.Fatal("acquired twice without a loss in between")
			}
			acquired, leading = acquired+1, true
		case messages.LeadershipLost:
			if !leading {
				t.Fatal("lost without having acquired")
			}
			lost, leading = lost+1, false
		}
	}
	if acquired < rounds || lost != acquired {
		t.Fatalf("read %d acquisitions and %d losses; want at least %d of each, equal", acquired, lost, rounds)
	}
}

func TestStartFailsClearlyWhenConsulIsUnreachable(t *testing.T) {
	opts := options(t, "nobody")
	opts.ConsulAddress = "http://127.0.0.1:1" // nothing listens there
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := consulelect.Start(ctx, opts)
	if err == nil || !strings.Contains(err.Error(), "cannot reach Consul") {
		t.Fatalf("Start = %v; want an error saying Consul cannot be reached", err)
	}
}

// TestCallsWithAnEndedContextReturnItsError: State does not ask the engine,
// and Stop stops without waiting for the graceful end.
func TestCallsWithAnEndedContextReturnItsError(t *testing.T) {
	e := start(t, options(t, "alpha"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-ctx.Done()
	if _, err := e.State(ctx, "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("State with an ended context = %v; want context.DeadlineExceeded", err)
	}
	if err := e.Stop(ctx); err == nil {
		t.Fatal("Stop with an ended context = nil; want the error of a stop not waited for")
	}
	if err := e.Campaign("x", nil); !errors.Is(err, consulelect.ErrStopped) {
		t.Fatalf("Campaign after Stop = %v; want ErrStopped", err)
	}
}

func TestCallsAfterStopReturnErrStopped(t *testing.T) {
	e := start(t, options(t, "alpha"))
	if err := e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.Campaign("x", nil); !errors.Is(err, consulelect.ErrStopped) {
		t.Fatalf("Campaign after Stop = %v; want ErrStopped", err)
	}
	if _, err := e.AwaitLeadership(context.Background(), "x"); !errors.Is(err, consulelect.ErrStopped) {
		t.Fatalf("AwaitLeadership after Stop = %v; want ErrStopped", err)
	}
}
