package actors_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
)

// acquireOrder is a backend that records the keys in the order their
// acquires are asked for.
type acquireOrder struct {
	*consul.Client
	mu   sync.Mutex
	keys []string
}

func (o *acquireOrder) AcquireAsync(ctx context.Context, key, session string, value []byte, done func(consul.Entry, error)) {
	o.mu.Lock()
	o.keys = append(o.keys, key)
	o.mu.Unlock()
	o.Client.AcquireAsync(ctx, key, session, value, done)
}

// TestLocksAcquireInCampaignOrder: a candidate asks for its keys in the
// resources' order, from an offset of its own, so that candidates starting
// together begin with different keys. The locks run on two goroutines, so
// neighbours may swap, and on a loaded machine two of the root's passes over
// the locks can interleave (up to 32 descents in 60 runs beside two busy
// loops); a map's order would put every other key out of place, ~150.
func TestLocksAcquireInCampaignOrder(t *testing.T) {
	const n = 300
	prefix := testPrefix(t)
	resources := make([]string, n)
	for i := range resources {
		resources[i] = fmt.Sprintf("r%03d", i)
	}
	first := map[string]int{}
	for _, id := range []string{"a", "b"} {
		opts := withPrefix(fastOptions(t, shared, id), prefix+"-"+id)
		opts.Resources = resources
		order := &acquireOrder{Client: consulClient(t, shared)}
		opts.Backend = order
		c := startCandidate(t, opts)
		for range n {
			await(c, 30*time.Second, func(messages.LeadershipAcquired) bool { return true })
		}
		order.mu.Lock()
		keys := slices.Clone(order.keys)
		order.mu.Unlock()
		if len(keys) != n {
			t.Fatalf("%s asked for %d acquires; want one per resource, %d", id, len(keys), n)
		}
		at := make([]int, n) // each acquire's place in the resources' order
		for i, key := range keys {
			if _, err := fmt.Sscanf(key, opts.KeyPrefix+"/r%03d", &at[i]); err != nil {
				t.Fatalf("acquire of %q: %v", key, err)
			}
		}
		descents := 0
		for i := 1; i < n; i++ {
			if at[i] < at[i-1] {
				descents++
			}
		}
		if descents > n/5 {
			t.Errorf("%s: %d acquires came before the one of a key it campaigns for earlier; want the resources' order, from one offset (one wrap), up to %d swaps: %v",
				id, descents, n/5, at)
		}
		first[id] = at[0]
	}
	if first["a"] == first["b"] {
		t.Errorf("a and b both began with r%03d; want offsets of their own", first["a"])
	}
}

// queuedAcquire is a backend whose first acquire of key waits, as one queued
// behind others in the client's batch would, until its context ends; the
// client then answers it as it answers a request given up before it was sent.
type queuedAcquire struct {
	*consul.Client
	key   string
	asked chan struct{} // closed when the acquire is asked for
	ended chan error    // its context's error
	first sync.Once
}

func (q *queuedAcquire) AcquireAsync(ctx context.Context, key, session string, value []byte, done func(consul.Entry, error)) {
	queued := false
	if key == q.key {
		q.first.Do(func() { queued = true })
	}
	if !queued {
		q.Client.AcquireAsync(ctx, key, session, value, done)
		return
	}
	close(q.asked)
	go func() {
		<-ctx.Done()
		q.ended <- ctx.Err()
		q.Client.AcquireAsync(ctx, key, session, value, done)
	}()
}

// TestAQueuedAcquireOfAKeyTakenMeanwhileIsGivenUp: b's acquire is still
// waiting to be sent when a acquires the key. Once b's watcher shows a
// holding it, b gives its acquire up, which keeps it out of the batch, and
// follows a as if the acquire had failed: no error, and b leads after a.
func TestAQueuedAcquireOfAKeyTakenMeanwhileIsGivenUp(t *testing.T) {
	prefix := testPrefix(t)
	bOpts := withPrefix(fastOptions(t, shared, "b"), prefix)
	queued := &queuedAcquire{Client: consulClient(t, shared), key: prefix + "/jobs",
		asked: make(chan struct{}), ended: make(chan error, 1)}
	bOpts.Backend = queued
	b := startCandidate(t, bOpts)
	b.campaign("jobs")
	<-queued.asked

	a := startCandidate(t, withPrefix(fastOptions(t, shared, "a"), prefix))
	a.campaign("jobs")
	await(a, 15*time.Second, func(messages.LeadershipAcquired) bool { return true })
	select {
	case err := <-queued.ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("b's queued acquire ended with %v; want it given up (context.Canceled)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b's queued acquire was still waiting 5s after a acquired the key")
	}
	knows(t, a, "jobs", "b")
	a.system.Root.Send(a.root, &messages.Resign{Resource: "jobs", HoldOff: time.Minute})
	await(b, 10*time.Second, func(e any) bool {
		if failure, ok := e.(messages.ElectionError); ok {
			t.Errorf("b: %v; want the given-up acquire to be no error", failure)
		}
		_, led := e.(messages.LeadershipAcquired)
		return led
	})
}
