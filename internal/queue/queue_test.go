package queue_test

import (
	"sync"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/internal/queue"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSlowConsumerNeitherBlocksNorLoses pushes while the consumer is stuck:
// every Push returns at once, and Close delivers everything, in order.
func TestSlowConsumerNeitherBlocksNorLoses(t *testing.T) {
	gate := make(chan struct{})
	var mu sync.Mutex
	var got []int
	q := queue.Start(func(n int) {
		<-gate
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	})
	pushed := make(chan struct{})
	go func() {
		for i := range 1000 {
			q.Push(i)
		}
		close(pushed)
	}()
	select {
	case <-pushed:
	case <-time.After(5 * time.Second):
		t.Fatal("Push blocked on a stuck consumer")
	}
	close(gate)
	q.Close()
	q.Push(1000) // after Close: dropped
	if len(got) != 1000 {
		t.Fatalf("delivered %d items; want 1000", len(got))
	}
	for i, n := range got {
		if n != i {
			t.Fatalf("item %d is %d: out of order", i, n)
		}
	}
	q.Close() // twice is fine
}
