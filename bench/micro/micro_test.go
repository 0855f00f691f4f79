package micro

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
)

const (
	prefix   = "micro"
	resource = "r"
	// holdOffForever keeps a resigned candidate out until the benchmark lets
	// it campaign again with holdOffNone.
	holdOffForever = time.Hour
	holdOffNone    = time.Nanosecond
	waitBound      = 10 * time.Second
)

// candidate is one engine (actors.NewProps) with a listener that hands the
// benchmark its events without blocking the engine.
type candidate struct {
	id       string
	system   *actor.ActorSystem
	root     *actor.PID
	acquired chan messages.LeadershipAcquired
	freed    chan string                 // resources seen free (LeaderChanged to nobody)
	leaders  chan messages.LeaderChanged // another candidate seen leading
	held     atomic.Int64
}

func startCandidate(b *testing.B, system *actor.ActorSystem, backend *memBackend, id string, ttl time.Duration, resources []string) *candidate {
	b.Helper()
	c := &candidate{id: id, system: system, acquired: make(chan messages.LeadershipAcquired, 1<<16),
		freed: make(chan string, 1<<16), leaders: make(chan messages.LeaderChanged, 1<<16)}
	opts := actors.DefaultOptions()
	opts.KeyPrefix = prefix
	opts.SessionTTL = ttl
	opts.LockDelay = 0
	opts.CandidateID = id
	opts.Resources = resources
	opts.Backend = backend
	opts.Observer = listener(func(evt messages.Event) {
		switch e := evt.(type) {
		case messages.LeadershipAcquired:
			c.held.Add(1)
			send(c.acquired, e)
		case messages.LeadershipLost:
			c.held.Add(-1)
		case messages.LeaderChanged:
			switch e.LeaderID {
			case "":
				send(c.freed, e.Resource)
			case id:
			default:
				send(c.leaders, e)
			}
		}
	})
	props, err := actors.NewProps(opts)
	if err != nil {
		b.Fatal(err)
	}
	c.root = system.Root.Spawn(props)
	b.Cleanup(c.stop)
	return c
}

func send[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
		panic("micro: event buffer full")
	}
}

func (c *candidate) stop() {
	if c.root == nil {
		return
	}
	_, _ = c.system.Root.RequestFuture(c.root, &messages.Stop{}, waitBound).Result()
	_ = c.system.Root.PoisonFuture(c.root).Wait()
	c.root = nil
}

func (c *candidate) resign(holdOff time.Duration) {
	c.system.Root.Send(c.root, &messages.Resign{Resource: resource, HoldOff: holdOff})
}

func await[T any](b *testing.B, ch chan T, what string) T {
	select {
	case v := <-ch:
		return v
	case <-time.After(waitBound):
		b.Fatalf("no %s within %s", what, waitBound)
		panic("unreachable")
	}
}

// awaitLeader waits until c has seen the leadership with token.
func awaitLeader(b *testing.B, c *candidate, token uint64) {
	deadline := time.After(waitBound)
	for {
		select {
		case l := <-c.leaders:
			if l.FencingToken == token {
				return
			}
		case <-deadline:
			b.Fatalf("%s did not see leadership %d within %s", c.id, token, waitBound)
		}
	}
}

func drain[T any](ch chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func newSystem(b *testing.B) *actor.ActorSystem {
	system := actor.NewActorSystem(actors.WithZapLogger(nil))
	b.Cleanup(system.Shutdown)
	return system
}

var sampleValue = consul.Value{CandidateID: "host-1234", Node: "node-1", AcquiredAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	Metadata: map[string]string{"version": "1.2.3", "zone": "a"}}

// BenchmarkEncodeValue: the document written with every acquire.
func BenchmarkEncodeValue(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = consul.EncodeValue(sampleValue)
	}
}

// BenchmarkDecodeValue: what the key watcher does for every changed key.
func BenchmarkDecodeValue(b *testing.B) {
	data := consul.EncodeValue(sampleValue)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := consul.DecodeValue(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReacquire: one engine resigns a resource and acquires it again:
// per op one release and one acquire, each seen by the key watcher, with
// `others` other lock keys under the prefix (the watcher reads them all on
// every change).
func BenchmarkReacquire(b *testing.B) {
	for _, others := range []int{0, 10000} {
		b.Run(fmt.Sprintf("others=%d", others), func(b *testing.B) {
			backend := newMemBackend()
			backend.preload(prefix, others)
			c := startCandidate(b, newSystem(b), backend, "a", 30*time.Second, []string{resource})
			await(b, c.acquired, "first acquisition")
			b.ReportAllocs()
			for b.Loop() {
				drain(c.freed)
				c.resign(holdOffForever)
				await(b, c.freed, "release seen") // the release has landed
				c.resign(holdOffNone)
				await(b, c.acquired, "acquisition")
			}
		})
	}
}

// BenchmarkHandover: two engines; the leader resigns and the standby
// acquires: per op one release, one acquire, two key watchers.
func BenchmarkHandover(b *testing.B) {
	for _, others := range []int{0, 10000} {
		b.Run(fmt.Sprintf("others=%d", others), func(b *testing.B) {
			backend := newMemBackend()
			backend.preload(prefix, others)
			system := newSystem(b)
			x := startCandidate(b, system, backend, "x", 30*time.Second, []string{resource})
			first := await(b, x.acquired, "first acquisition")
			y := startCandidate(b, system, backend, "y", 30*time.Second, []string{resource})
			awaitLeader(b, y, first.FencingToken)
			leader, standby := x, y
			b.ReportAllocs()
			for b.Loop() {
				leader.resign(holdOffForever)
				won := await(b, standby.acquired, "handover")
				// Campaign again only once the new leader is seen: from a
				// stale view of the key the old leader would try to acquire
				// (see TestLeaderIgnoresStaleKeyState in engine_races_test.go).
				awaitLeader(b, leader, won.FencingToken)
				leader.resign(holdOffNone)
				leader, standby = standby, leader
			}
		})
	}
}

// BenchmarkIdleRenewal: an op is one renewal period (TTL/2 = 500 ms) of an
// engine holding `resources` resources and doing nothing else: allocations
// per op are everything the process allocates per renewal while idle.
func BenchmarkIdleRenewal(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("resources=%d", n), func(b *testing.B) {
			backend := newMemBackend()
			names := make([]string, n)
			for i := range names {
				names[i] = fmt.Sprintf("r%05d", i)
			}
			c := startCandidate(b, newSystem(b), backend, "a", time.Second, names)
			deadline := time.Now().Add(waitBound)
			for c.held.Load() < int64(n) {
				if time.Now().After(deadline) {
					b.Fatalf("%d of %d held after %s", c.held.Load(), n, waitBound)
				}
				time.Sleep(time.Millisecond)
			}
			<-backend.renewed // a full period has passed since the acquisitions
			b.ReportAllocs()
			for b.Loop() {
				select {
				case <-backend.renewed:
				case <-time.After(waitBound):
					b.Fatal("no renewal")
				}
			}
		})
	}
}
