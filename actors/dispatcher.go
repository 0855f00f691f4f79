package actors

import (
	"runtime"
	"sync"
)

// pool is the dispatcher of an engine's lock actors: a few goroutines run
// the mailboxes of every lock, instead of protoactor's default goroutine per
// busy mailbox (ten thousand at once when ten thousand locks start, a large
// part of the engine's peak memory). A lock's Receive never blocks (its
// calls run off the mailbox), so a few goroutines keep up.
type pool struct {
	mu     sync.Mutex
	ready  *sync.Cond
	queue  []func()
	closed bool
	wg     sync.WaitGroup
}

// poolThroughput is how many messages a mailbox runs before yielding its
// goroutine to the next: protoactor's default.
const poolThroughput = 300

func newPool() *pool {
	p := &pool{}
	p.ready = sync.NewCond(&p.mu)
	workers := max(2, runtime.GOMAXPROCS(0))
	p.wg.Add(workers)
	for range workers {
		go p.work()
	}
	return p
}

// Schedule runs fn on one of the pool's goroutines; after close, on a
// goroutine of its own, as the default dispatcher does.
func (p *pool) Schedule(fn func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		go fn()
		return
	}
	p.queue = append(p.queue, fn)
	p.ready.Signal()
}

func (p *pool) Throughput() int { return poolThroughput }

func (p *pool) work() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		for len(p.queue) == 0 && !p.closed {
			p.ready.Wait()
		}
		if len(p.queue) == 0 {
			p.mu.Unlock()
			return
		}
		fn := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		if len(p.queue) == 0 {
			p.queue = nil // let the backing array go
		}
		p.mu.Unlock()
		fn()
	}
}

// close runs what is queued, then stops the goroutines and waits for them.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.ready.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}
