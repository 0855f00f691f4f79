// Package faultproxy is an HTTP reverse proxy to put in front of a Consul
// agent in tests, to make it fail the way Consul fails for a moment: a raft
// election answers "500 No cluster leader" for a second or more, an
// overloaded server answers 429.
//
// A Proxy passes every request through until a Fault is armed. The first
// request that the fault's When accepts then begins a burst: for the fault's
// duration the proxy answers requests itself with the fault's status and
// body, then passes everything through again. Requests already in flight
// when a burst begins (blocking queries, long polls) are not touched: only
// requests that arrive during the burst fail, as they do when Consul's
// servers lose their leader.
//
// It does not delay, drop or reorder anything, and it does not fail requests
// in the middle: a request is either passed through or answered at once.
package faultproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// Fault is one burst of answers from the proxy instead of the agent.
type Fault struct {
	// Status is the HTTP status to answer with (500, 429, …).
	Status int
	// Body is the answer's body; empty: http.StatusText(Status). Consul
	// answers "No cluster leader" while its servers elect a leader.
	Body string
	// For is how long the burst lasts, from the request that begins it.
	For time.Duration
	// When picks the request that begins the burst (it is answered with the
	// fault too); nil: the next request.
	When func(*http.Request) bool
	// Affects picks which requests the burst answers; nil: every request.
	// Requests it does not pick are passed through during the burst.
	Affects func(*http.Request) bool
}

// Burst is an armed fault: it tells when its burst began and ended and how
// many requests it answered.
type Burst struct {
	fault        Fault
	began, ended chan struct{}

	mu               sync.Mutex
	beganAt, endedAt time.Time
	trigger          string
	answered         int
	timer            *time.Timer
}

// Began is closed when the burst begins.
func (b *Burst) Began() <-chan struct{} { return b.began }

// Ended is closed when the burst is over, or, if it never began, when it
// was replaced by another Arm or the proxy was closed.
func (b *Burst) Ended() <-chan struct{} { return b.ended }

// BeganAt is when the request that began the burst arrived; zero before.
func (b *Burst) BeganAt() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.beganAt
}

// EndedAt is when the burst ended (BeganAt + For, unless the proxy was
// closed first); zero before.
func (b *Burst) EndedAt() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.endedAt
}

// Trigger is the method and path of the request that began the burst.
func (b *Burst) Trigger() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.trigger
}

// Answered is how many requests the proxy answered with the fault so far.
func (b *Burst) Answered() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.answered
}

// end ends the burst at now, once.
func (b *Burst) end(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.endedAt.IsZero() {
		b.endedAt = now
		close(b.ended)
	}
}

// Proxy is a reverse proxy to one agent, listening on 127.0.0.1.
type Proxy struct {
	url      string
	server   *http.Server
	proxy    *httputil.ReverseProxy
	upstream *http.Transport
	cancel   context.CancelFunc // cancels every request's context
	serving  chan struct{}      // closed when Serve has returned

	mu     sync.Mutex
	armed  *Burst // waiting for a request When accepts
	active *Burst // in its burst until active.beganAt + For
	closed bool
	passed map[int]int // the agent's answers passed through, by status
}

// Start starts a proxy to target, the agent's address (http://host:port),
// on a random port of 127.0.0.1.
func Start(target string) (*Proxy, error) {
	to, err := url.Parse(target)
	if err != nil || to.Scheme == "" || to.Host == "" {
		return nil, errors.New("faultproxy: target must be an absolute URL such as http://127.0.0.1:8500")
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		url: "http://" + listener.Addr().String(),
		// Its own transport, without timeouts: a blocking query waits as
		// long as the agent makes it; Close drops its idle connections.
		upstream: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{}).DialContext, MaxIdleConnsPerHost: 64},
		cancel:   cancel,
		serving:  make(chan struct{}),
		passed:   map[int]int{},
	}
	p.proxy = &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(to) },
		Transport: p.upstream,
		// Consul streams nothing the client needs early, but flushing at
		// once keeps the proxy from holding an answer back.
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			p.mu.Lock()
			p.passed[resp.StatusCode]++
			p.mu.Unlock()
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusBadGateway) // the agent is down, or the client gave up
		},
	}
	p.server = &http.Server{
		Handler:     http.HandlerFunc(p.serve),
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	go func() {
		defer close(p.serving)
		_ = p.server.Serve(listener)
	}()
	return p, nil
}

// URL is the proxy's address, to use as the agent's (http://127.0.0.1:port).
func (p *Proxy) URL() string { return p.url }

// Passed is how many of the agent's answers with this status the proxy has
// passed through (its own answers, a burst's, are counted by their Burst).
func (p *Proxy) Passed(status int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.passed[status]
}

// Arm makes the next request that f.When accepts begin a burst. It replaces
// a fault armed earlier whose burst has not begun (that one ends without
// beginning); a burst in progress runs its course, and the new one can only
// begin after it.
func (p *Proxy) Arm(f Fault) *Burst {
	b := &Burst{fault: f, began: make(chan struct{}), ended: make(chan struct{})}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		close(b.ended)
		return b
	}
	if p.armed != nil {
		p.armed.end(time.Now())
	}
	p.armed = b
	return b
}

// serve answers r with the burst's fault or passes it to the agent.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	if b := p.faultFor(r, time.Now()); b != nil {
		body := b.fault.Body
		if body == "" {
			body = http.StatusText(b.fault.Status)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(b.fault.Status)
		_, _ = io.WriteString(w, body)
		return
	}
	p.proxy.ServeHTTP(w, r)
}

// faultFor returns the burst that answers r, arrived at now, if any.
func (p *Proxy) faultFor(r *http.Request, now time.Time) *Burst {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.active; b != nil && !now.Before(b.beganAt.Add(b.fault.For)) {
		p.active = nil
		b.end(b.beganAt.Add(b.fault.For))
	}
	if b := p.armed; b != nil && p.active == nil && (b.fault.When == nil || b.fault.When(r)) {
		p.armed, p.active = nil, b
		b.mu.Lock()
		b.beganAt, b.trigger = now, r.Method+" "+r.URL.Path
		b.mu.Unlock()
		close(b.began)
		b.timer = time.AfterFunc(b.fault.For, func() { b.end(now.Add(b.fault.For)) })
		b.count()
		return b
	}
	if b := p.active; b != nil && (b.fault.Affects == nil || b.fault.Affects(r)) {
		b.count()
		return b
	}
	return nil
}

func (b *Burst) count() {
	b.mu.Lock()
	b.answered++
	b.mu.Unlock()
}

// Close stops the proxy: it closes the listener and every connection,
// cancels the requests in flight (blocking queries included), ends the
// burst in progress and waits until nothing of the proxy runs any more.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for _, b := range []*Burst{p.armed, p.active} {
		if b != nil {
			if b.timer != nil {
				b.timer.Stop()
			}
			b.end(time.Now())
		}
	}
	p.armed, p.active = nil, nil
	p.mu.Unlock()

	p.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.server.Shutdown(ctx) // waits for the handlers, which p.cancel ended
	if err != nil {
		err = p.server.Close()
	}
	<-p.serving
	p.upstream.CloseIdleConnections()
	return err
}
