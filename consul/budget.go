package consul

import (
	"container/list"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
)

// budget bounds the requests a Client has in flight to its agent
// (Config.MaxConnections, N below). The agent's http_max_conns_per_client
// (200 by default) counts the connections of every process on a host
// together and answers 429 above it; each request holds a connection of its
// own (HTTP/1.1 keep-alive), so N in flight is N connections at most.
//
// A plain connection limit (http.Transport.MaxConnsPerHost) would bound the
// connections, but it serves waiting requests in arrival order and lets
// blocking queries take every connection for minutes. The budget adds two
// reserves, for N of 3 or more:
//
//   - blocking queries (a read with ?index=, which may hold its connection
//     for as long as its wait) take at most N−2 slots;
//   - everything but liveness (session renewals and TTL-check updates, what
//     keeps leadership alive) takes at most N−1, so one slot is always free
//     for, or held by, a liveness request;
//   - waiting liveness requests go first; the others go in arrival order, a
//     blocking query skipped while its share is full.
//
// So a renewal waits at most for another liveness request (there are one or
// two per engine), never behind writes or long polls, and writes always have
// a slot that no long poll holds. Below 3 the reserves cannot both be kept:
// with N=2 blocking queries take at most one slot and liveness only goes
// first; N=1 sends one request at a time.
type budget struct {
	max      int // N: every request
	polls    int // blocking queries at most
	nonLive  int // everything but liveness at most
	mu       sync.Mutex
	used     [classes]int
	waiting  [classes]*list.List // of *slotWait, in arrival order
	arrivals uint64
}

// class is what a request is to the budget.
type class int

const (
	classRequest  class = iota // answers at once: reads, writes, transactions
	classPoll                  // a blocking query
	classLiveness              // a session renewal or a TTL check update
	classes
)

type slotWait struct {
	class   class
	seq     uint64 // arrival order across classes
	ready   chan struct{}
	granted bool
}

func newBudget(n int) *budget {
	b := &budget{max: n, polls: max(1, n-2), nonLive: n}
	if n >= 3 {
		b.nonLive = n - 1
	}
	for i := range b.waiting {
		b.waiting[i] = list.New()
	}
	return b
}

// classOf tells a blocking query (?index= other than 0: the api package sets
// it only for one) and liveness from every other request.
func classOf(r *http.Request) class {
	p := r.URL.Path
	switch {
	case strings.Contains(p, "/v1/session/renew/"), strings.Contains(p, "/v1/agent/check/update/"),
		strings.Contains(p, "/v1/agent/check/pass/"), strings.Contains(p, "/v1/agent/check/warn/"),
		strings.Contains(p, "/v1/agent/check/fail/"):
		return classLiveness
	}
	if index := r.URL.Query().Get("index"); index != "" && index != "0" {
		return classPoll
	}
	return classRequest
}

// fits reports whether a request of class c may start now; b.mu is held.
func (b *budget) fits(c class) bool {
	total := b.used[classRequest] + b.used[classPoll] + b.used[classLiveness]
	switch {
	case total >= b.max:
		return false
	case c == classLiveness:
		return true
	case b.used[classRequest]+b.used[classPoll] >= b.nonLive:
		return false
	}
	return c != classPoll || b.used[classPoll] < b.polls
}

// acquire waits for a slot for a request of class c, or for ctx to end.
func (b *budget) acquire(ctx context.Context, c class) error {
	b.mu.Lock()
	// Waiters of c that fit would have been granted already, so a new
	// request that fits passes nobody that could go.
	if b.fits(c) {
		b.used[c]++
		b.mu.Unlock()
		return nil
	}
	b.arrivals++
	w := &slotWait{class: c, seq: b.arrivals, ready: make(chan struct{})}
	elem := b.waiting[c].PushBack(w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		granted := w.granted
		if !granted {
			b.waiting[c].Remove(elem)
		}
		b.mu.Unlock()
		if granted {
			b.release(c)
		}
		return ctx.Err()
	}
}

// release frees a slot of class c and hands the free slots to the waiters.
func (b *budget) release(c class) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used[c]--
	b.grant(classLiveness)
	for {
		// The earliest waiting request or poll that fits.
		var next *list.Element
		for _, c := range []class{classRequest, classPoll} {
			if e := b.waiting[c].Front(); e != nil && b.fits(c) &&
				(next == nil || e.Value.(*slotWait).seq < next.Value.(*slotWait).seq) {
				next = e
			}
		}
		if next == nil {
			return
		}
		b.take(next)
	}
}

// grant starts the waiters of class c, in order, while they fit.
func (b *budget) grant(c class) {
	for e := b.waiting[c].Front(); e != nil && b.fits(c); e = b.waiting[c].Front() {
		b.take(e)
	}
}

func (b *budget) take(e *list.Element) {
	w := e.Value.(*slotWait)
	b.waiting[w.class].Remove(e)
	b.used[w.class]++
	w.granted = true
	close(w.ready)
}

// budgeted is the transport of a Client with a budget: a request holds its
// slot until its answer's body is read to the end or closed, which is when
// net/http hands the connection to the next request.
type budgeted struct {
	budget *budget
	next   http.RoundTripper
}

func (t *budgeted) RoundTrip(r *http.Request) (*http.Response, error) {
	c := classOf(r)
	if err := t.budget.acquire(r.Context(), c); err != nil {
		if r.Body != nil {
			r.Body.Close() // RoundTrip always closes the request's body
		}
		return nil, err
	}
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		t.budget.release(c)
		return nil, err
	}
	resp.Body = &slotBody{ReadCloser: resp.Body, release: sync.OnceFunc(func() { t.budget.release(c) })}
	return resp, nil
}

type slotBody struct {
	io.ReadCloser
	release func()
}

func (b *slotBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.release()
	}
	return n, err
}

func (b *slotBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}
