package actors_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/devconsul"
	"github.com/excalibur/consul-elect/messages"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// shared is the dev agent most tests use; each test has its own KeyPrefix.
// Tests that restart, pause or reconfigure an agent start their own.
var shared *devconsul.Agent

func TestMain(m *testing.M) { devconsul.Main(m, &shared) }

var prefixes atomic.Int64

// testPrefix is a KeyPrefix no other test uses.
func testPrefix(t *testing.T) string {
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return fmt.Sprintf("test/%s-%d", name, prefixes.Add(1))
}

// fastOptions are options for a quick test on agent: 2s TTL, no lock-delay.
func fastOptions(t *testing.T, agent *devconsul.Agent, id string) actors.Options {
	opts := actors.DefaultOptions()
	opts.ConsulAddress = agent.URL()
	opts.KeyPrefix = testPrefix(t)
	opts.SessionTTL = 2 * time.Second
	opts.LockDelay = 0
	opts.CandidateID = id
	if testing.Verbose() {
		opts.Logger = zaptest.NewLogger(t)
	}
	return opts
}

// candidate is one election engine in an actor system of its own, with its
// events collected from the EventStream as a user would.
type candidate struct {
	t      *testing.T
	id     string
	system *actor.ActorSystem
	root   *actor.PID
	events chan any
	opts   actors.Options
}

func startCandidate(t *testing.T, opts actors.Options) *candidate {
	t.Helper()
	c := &candidate{t: t, id: opts.CandidateID, events: make(chan any, 10000), opts: opts}
	c.system = actor.NewActorSystem(actors.WithZapLogger(opts.Logger))
	c.system.EventStream.Subscribe(func(evt any) {
		switch evt.(type) {
		case messages.LeadershipAcquired, messages.LeadershipLost, messages.LeaderChanged, messages.ElectionError:
			c.events <- evt
		}
	})
	props, err := actors.NewProps(opts)
	if err != nil {
		t.Fatalf("NewProps: %v", err)
	}
	c.root = c.system.Root.Spawn(props)
	t.Cleanup(c.stop)
	return c
}

// stop stops the candidate gracefully (idempotent).
func (c *candidate) stop() {
	if c.root == nil {
		return
	}
	_, _ = c.system.Root.RequestFuture(c.root, &messages.Stop{}, 10*time.Second).Result()
	_ = c.system.Root.PoisonFuture(c.root).Wait()
	c.system.Shutdown()
	c.root = nil
}

func (c *candidate) campaign(resource string) {
	c.system.Root.Send(c.root, &messages.Campaign{Resource: resource})
}

// await waits for an event that match accepts, failing the test after timeout.
func await[T any](c *candidate, timeout time.Duration, match func(T) bool) T {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case evt := <-c.events:
			if e, ok := evt.(T); ok && (match == nil || match(e)) {
				return e
			}
		case <-deadline:
			var zero T
			c.t.Fatalf("%s: no %T within %s", c.id, zero, timeout)
			return zero
		}
	}
}

// none fails if an event of type T that match accepts arrives within d.
func none[T any](c *candidate, d time.Duration, match func(T) bool) {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case evt := <-c.events:
			if e, ok := evt.(T); ok && (match == nil || match(e)) {
				c.t.Fatalf("%s: unexpected %#v", c.id, e)
			}
		case <-deadline:
			return
		}
	}
}

func (c *candidate) state(resource string) messages.State {
	c.t.Helper()
	res, err := c.system.Root.RequestFuture(c.root, &messages.GetState{Resource: resource}, 5*time.Second).Result()
	if err != nil {
		c.t.Fatalf("GetState: %v", err)
	}
	return *res.(*messages.State)
}

// operator is an operator's hands on agent (reading, writing and deleting
// keys, destroying sessions, registering checks), as another tool would use
// them.
func operator(t *testing.T, agent *devconsul.Agent) *devconsul.Operator {
	t.Helper()
	return agent.Operator()
}

// consulClient is a Consul client of the test's own, for the calls the
// engine makes.
func consulClient(t *testing.T, agent *devconsul.Agent) *consul.Client {
	t.Helper()
	client, err := consul.NewClient(consul.Config{Address: agent.URL(), Token: agent.ManagementToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return client
}

func quietLogger() *zap.Logger { return zap.NewNop() }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
