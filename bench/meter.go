package bench

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// errKilled is what every request of a killed candidate gets.
var errKilled = errors.New("bench: this candidate was killed")

// Meter is an HTTP transport wrapper that counts what one candidate sends to
// Consul and can cut it off as if its process had died. The same Meter type
// wraps consul-elect's client (consul.Config.WrapTransport) and api.Lock's
// (reference.Config.WrapTransport), so both are counted the same way.
type Meter struct {
	requests atomic.Int64 // requests that reached the agent (had an answer)
	tooMany  atomic.Int64 // answers 429 Too Many Requests
	failed   atomic.Int64 // transport errors (connection refused or reset, cancelled)
	bytesIn  atomic.Int64 // response body bytes read
	blocking atomic.Int64 // blocking queries in flight
	inFlight atomic.Int64 // requests sent and not yet finished (answer body read to the end or closed, or failed)
	peak     atomic.Int64 // most requests in flight at once since TakePeakInFlight

	mu   sync.Mutex
	byOp map[string]int64

	dead context.Context
	kill context.CancelFunc
}

// NewMeter returns a live meter.
func NewMeter() *Meter {
	dead, kill := context.WithCancel(context.Background())
	return &Meter{byOp: map[string]int64{}, dead: dead, kill: kill}
}

// Wrap is the WrapTransport function.
func (m *Meter) Wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) { return m.roundTrip(next, req) })
}

// Kill makes the candidate dead to Consul from now on: requests in flight
// (blocking queries included) are cancelled and every new one fails at
// once, before reaching the agent. Nothing is released, nothing is
// destroyed, no renewal gets through: to Consul the candidate's process has
// died, and its session ends by TTL expiry (or by an operator).
func (m *Meter) Kill() { m.kill() }

// BlockingInFlight is the number of blocking queries (requests with
// ?index=N, N > 0) waiting at the agent right now.
func (m *Meter) BlockingInFlight() int64 { return m.blocking.Load() }

// TakePeakInFlight returns the most requests that were in flight at once
// (sent, and not yet answered in full or failed; blocking queries included)
// since the previous call, and starts the next period.
func (m *Meter) TakePeakInFlight() int64 { return m.peak.Swap(m.inFlight.Load()) }

func (m *Meter) raisePeak(n int64) {
	for {
		p := m.peak.Load()
		if n <= p || m.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (m *Meter) roundTrip(next http.RoundTripper, req *http.Request) (*http.Response, error) {
	if m.dead.Err() != nil {
		return nil, errKilled
	}
	op, blocking := opOf(req)
	ctx, cancel := context.WithCancel(req.Context())
	stop := context.AfterFunc(m.dead, cancel)
	if blocking {
		m.blocking.Add(1)
	}
	m.raisePeak(m.inFlight.Add(1))
	done := func() {
		stop()
		cancel()
		m.inFlight.Add(-1)
		if blocking {
			m.blocking.Add(-1)
		}
	}
	resp, err := next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		m.failed.Add(1)
		done()
		if m.dead.Err() != nil {
			return nil, errKilled
		}
		return nil, err
	}
	m.requests.Add(1)
	if resp.StatusCode == http.StatusTooManyRequests {
		m.tooMany.Add(1)
	}
	m.mu.Lock()
	m.byOp[op]++
	m.mu.Unlock()
	resp.Body = &countingBody{ReadCloser: resp.Body, meter: m, done: done}
	return resp, nil
}

// opOf names a request by method and endpoint, without ids and keys:
// "PUT /v1/session/renew", "GET /v1/kv (blocking)".
func opOf(req *http.Request) (string, bool) {
	parts := strings.SplitN(strings.TrimPrefix(req.URL.Path, "/"), "/", 4)
	n := min(len(parts), 3)
	if len(parts) >= 2 && parts[1] == "kv" {
		n = 2
	}
	op := req.Method + " /" + strings.Join(parts[:n], "/")
	index := req.URL.Query().Get("index")
	blocking := index != "" && index != "0"
	if blocking {
		op += " (blocking)"
	}
	return op, blocking
}

type countingBody struct {
	io.ReadCloser
	meter *Meter
	done  func()
	once  sync.Once
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.meter.bytesIn.Add(int64(n))
	if err == io.EOF {
		// Read to the end: net/http has handed the connection on, and the
		// connection budget its slot.
		b.once.Do(b.done)
	}
	return n, err
}

func (b *countingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// Counts is a snapshot of a Meter.
type Counts struct {
	Requests, TooMany, Failed, BytesIn int64
	ByOp                               map[string]int64
}

// Snapshot reads the counters.
func (m *Meter) Snapshot() Counts {
	m.mu.Lock()
	byOp := make(map[string]int64, len(m.byOp))
	for op, n := range m.byOp {
		byOp[op] = n
	}
	m.mu.Unlock()
	return Counts{Requests: m.requests.Load(), TooMany: m.tooMany.Load(), Failed: m.failed.Load(),
		BytesIn: m.bytesIn.Load(), ByOp: byOp}
}

// Since returns the counts from earlier to c.
func (c Counts) Since(earlier Counts) Counts {
	d := Counts{Requests: c.Requests - earlier.Requests, TooMany: c.TooMany - earlier.TooMany,
		Failed: c.Failed - earlier.Failed, BytesIn: c.BytesIn - earlier.BytesIn, ByOp: map[string]int64{}}
	for op, n := range c.ByOp {
		if n -= earlier.ByOp[op]; n != 0 {
			d.ByOp[op] = n
		}
	}
	return d
}

// Breakdown lists the counts by operation, most frequent first:
// "PUT /v1/session/renew 40, GET /v1/kv (blocking) 2".
func (c Counts) Breakdown() string {
	ops := make([]string, 0, len(c.ByOp))
	for op := range c.ByOp {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool {
		if c.ByOp[ops[i]] != c.ByOp[ops[j]] {
			return c.ByOp[ops[i]] > c.ByOp[ops[j]]
		}
		return ops[i] < ops[j]
	})
	var b strings.Builder
	for i, op := range ops {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(op)
		b.WriteString(" ")
		b.WriteString(itoa(c.ByOp[op]))
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// Plus returns the sum of c and other.
func (c Counts) Plus(other Counts) Counts {
	sum := Counts{Requests: c.Requests + other.Requests, TooMany: c.TooMany + other.TooMany,
		Failed: c.Failed + other.Failed, BytesIn: c.BytesIn + other.BytesIn, ByOp: map[string]int64{}}
	for op, n := range c.ByOp {
		sum.ByOp[op] += n
	}
	for op, n := range other.ByOp {
		sum.ByOp[op] += n
	}
	return sum
}
