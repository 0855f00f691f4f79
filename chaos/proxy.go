package chaos

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards TCP connections from a loopback port to a target, and can
// cut them or slow them down: a candidate talks to Consul through one, so
// that the suite can partition that candidate alone.
type Proxy struct {
	target   string
	listener net.Listener
	latency  atomic.Int64 // added to every chunk, each way (a time.Duration)

	mu      sync.Mutex
	links   map[*link]struct{}
	cut     bool
	mode    CutMode
	held    []net.Conn // blackholed while cut
	closed  bool
	running sync.WaitGroup
}

// CutMode is what a cut proxy does with new connections.
type CutMode int

const (
	// Refuse resets new connections at once, as a host that is down.
	Refuse CutMode = iota
	// Blackhole accepts new connections and never answers, as a partition
	// that drops packets; they are reset when the cut heals.
	Blackhole
)

func (m CutMode) String() string {
	if m == Blackhole {
		return "blackhole"
	}
	return "refuse"
}

// dialTimeout bounds the connection to the target.
const dialTimeout = 2 * time.Second

// NewProxy listens on a free loopback port and forwards to target
// (host:port).
func NewProxy(target string) (*Proxy, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, listener: listener, links: map[*link]struct{}{}}
	p.running.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address, 127.0.0.1:PORT.
func (p *Proxy) Addr() string { return p.listener.Addr().String() }

// Cut closes every connection and, until Heal, treats new ones as mode says.
func (p *Proxy) Cut(mode CutMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.mode = true, mode
	p.dropLinks()
}

// Heal ends a cut: blackholed connections are reset, new ones forwarded.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
	p.dropHeld()
}

// SetLatency delays every chunk of data, each way, by d from now on (0: no
// delay). Data already queued keeps its delay; order is kept.
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// Close stops listening, closes every connection and waits for the proxy's
// goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	err := p.listener.Close()
	p.dropLinks()
	p.dropHeld()
	p.mu.Unlock()
	p.running.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.running.Done()
	for {
		conn, err := p.listener.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		switch {
		case p.closed:
			reset(conn)
		case p.cut && p.mode == Blackhole:
			p.held = append(p.held, conn)
		case p.cut:
			reset(conn)
		default:
			l := &link{client: conn, done: make(chan struct{})}
			p.links[l] = struct{}{}
			p.running.Add(1)
			go p.serve(l)
		}
		p.mu.Unlock()
	}
}

// dropLinks closes every forwarded connection. p.mu must be held.
func (p *Proxy) dropLinks() {
	for l := range p.links {
		l.close()
	}
	clear(p.links)
}

// dropHeld resets blackholed connections. p.mu must be held.
func (p *Proxy) dropHeld() {
	for _, conn := range p.held {
		reset(conn)
	}
	p.held = nil
}

// reset closes conn with a TCP RST rather than a FIN, as a refused or
// broken connection looks to its peer.
func reset(conn net.Conn) {
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}

// link is one forwarded connection: client ↔ proxy ↔ target.
type link struct {
	client, target net.Conn
	done           chan struct{}
	once           sync.Once
	mu             sync.Mutex // guards target against close during dial
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		reset(l.client)
		l.mu.Lock()
		if l.target != nil {
			reset(l.target)
		}
		l.mu.Unlock()
	})
}

func (p *Proxy) serve(l *link) {
	defer p.running.Done()
	defer func() {
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
		l.close()
	}()
	target, err := net.DialTimeout("tcp", p.target, dialTimeout)
	if err != nil {
		return
	}
	l.mu.Lock()
	l.target = target
	l.mu.Unlock()
	select {
	case <-l.done: // cut while dialling
		reset(target)
		return
	default:
	}
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() { defer pipes.Done(); p.pipe(l, target, l.client) }()
	go func() { defer pipes.Done(); p.pipe(l, l.client, target) }()
	pipes.Wait()
}

// chunk is data read from one side, to be written to the other at due.
type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst, each chunk delayed by the latency in force when it
// was read. When either side fails or ends, the whole link is closed (after
// what was read has been delivered): HTTP clients do not half-close.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	chunks := make(chan chunk, 64)
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(chunks)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				c := chunk{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(time.Duration(p.latency.Load()))}
				select {
				case chunks <- c:
				case <-l.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		l.close() // unblocks the reader
		<-read
	}()
	for c := range chunks {
		if wait := time.Until(c.due); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-l.done:
				timer.Stop()
				return
			}
		}
		if _, err := dst.Write(c.data); err != nil {
			return
		}
	}
}
