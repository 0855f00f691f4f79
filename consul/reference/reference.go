// Package reference wraps HashiCorp's own lock, api.Lock from
// github.com/hashicorp/consul/api, so that the benchmark harness (bench/) can
// measure it side by side with consul-elect on the same agent. It is a thin
// adapter, not a second implementation: every lock is an api.Lock used the
// way its documentation shows (LockOpts, Lock, Unlock), with its own session,
// renewer and monitoring blocking query, exactly as a user of the api package
// would get.
//
// Two things are added around it, neither of which changes what api.Lock
// sends: a counter of the locks currently held, and Close, which cancels
// every request still in flight (api.Lock's calls take no context, so a Lock
// waiting in a blocking query could otherwise not be abandoned in bounded
// time).
package reference

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

// ErrClosed is returned by requests made after Close.
var ErrClosed = errors.New("reference: client closed")

// MinLockDelay is the smallest lock-delay api.Lock can ask for. The api
// package leaves a zero LockDelay out of the session request, so Consul
// applies its 15 s default; and it sends others in whole milliseconds. A
// LockDelay of 0 is therefore sent as 1 ms, which is as close to none as
// api.Lock gets.
const MinLockDelay = time.Millisecond

// Config says how to reach the agent.
type Config struct {
	// Address: http://host:port.
	Address string
	// WrapTransport, when set, wraps the HTTP transport (to count requests,
	// or to cut the client off as if its process had died).
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// Client is one api.Client: what one process using api.Lock would have. It
// is safe for concurrent use.
type Client struct {
	api    *api.Client
	http   *http.Client
	ctx    context.Context
	cancel context.CancelFunc
	held   atomic.Int64
}

// NewClient builds a client. It sends nothing.
func NewClient(cfg Config) (*Client, error) {
	conf := api.DefaultConfig()
	if cfg.Address == "" {
		return nil, errors.New("reference: Address is empty")
	}
	conf.Address = cfg.Address
	httpClient, err := api.NewHttpClient(conf.Transport, conf.TLSConfig)
	if err != nil {
		return nil, fmt.Errorf("reference: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rt := httpClient.Transport
	if cfg.WrapTransport != nil {
		rt = cfg.WrapTransport(rt)
	}
	httpClient.Transport = &cancellable{next: rt, ctx: ctx}
	conf.HttpClient = httpClient
	client, err := api.NewClient(conf)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("reference: %w", err)
	}
	return &Client{api: client, http: httpClient, ctx: ctx, cancel: cancel}, nil
}

// Close cancels every request in flight and refuses new ones: a Lock waiting
// returns an error, renewers stop reaching Consul (their sessions expire by
// TTL unless unlocked first). Idle connections are closed.
func (c *Client) Close() {
	c.cancel()
	c.http.CloseIdleConnections()
}

// LocksHeld is how many locks of this client are held right now: acquired
// and neither unlocked nor lost.
func (c *Client) LocksHeld() int { return int(c.held.Load()) }

// LockOptions configure one lock.
type LockOptions struct {
	Key        string
	Value      []byte
	SessionTTL time.Duration // api.Lock's default: 15s
	// LockDelay of the lock's session; 0 is sent as MinLockDelay.
	LockDelay time.Duration
}

// Lock is one api.Lock. Each Lock call creates a session and a renewer;
// Unlock releases the key and destroys that session.
type Lock struct {
	client *Client
	lock   *api.Lock
}

// NewLock returns a lock on opts.Key. It sends nothing.
func (c *Client) NewLock(opts LockOptions) (*Lock, error) {
	ttl := opts.SessionTTL
	if ttl == 0 {
		ttl, _ = time.ParseDuration(api.DefaultLockSessionTTL)
	}
	delay := opts.LockDelay
	if delay < MinLockDelay {
		delay = MinLockDelay
	}
	lock, err := c.api.LockOpts(&api.LockOptions{
		Key:        opts.Key,
		Value:      opts.Value,
		SessionTTL: ttl.String(),
		LockDelay:  delay,
	})
	if err != nil {
		return nil, fmt.Errorf("reference: %w", err)
	}
	return &Lock{client: c, lock: lock}, nil
}

// Lock blocks until the lock is held, stop is closed (nil, nil) or a request
// fails. api.Lock looks at stop only between its blocking queries (up to
// 15 s apart); Client.Close ends the wait at once. The returned channel is
// closed when the lock is lost or unlocked.
func (l *Lock) Lock(stop <-chan struct{}) (<-chan struct{}, error) {
	lost, err := l.lock.Lock(stop)
	if err != nil || lost == nil {
		return nil, err
	}
	done := make(chan struct{})
	l.client.held.Add(1)
	go func() {
		<-lost // api.Lock closes it when its monitoring query ends
		l.client.held.Add(-1)
		close(done)
	}()
	return done, nil
}

// Unlock releases the key (api.Lock's Unlock) and destroys the session, in
// the background as api.Lock does.
func (l *Lock) Unlock() error {
	return l.lock.Unlock()
}

// Holder returns the session that holds key ("" when free) and the key's
// index, read once. It serves harnesses that must name a lock's session.
func (c *Client) Holder(key string) (session string, index uint64, err error) {
	pair, meta, err := c.api.KV().Get(key, (&api.QueryOptions{}).WithContext(c.ctx))
	if err != nil {
		return "", 0, fmt.Errorf("reference: read %s: %w", key, err)
	}
	if pair == nil {
		return "", meta.LastIndex, nil
	}
	return pair.Session, meta.LastIndex, nil
}

// cancellable ties every request to the client's context, so that Close
// ends requests in flight (blocking queries included) and refuses new ones.
type cancellable struct {
	next http.RoundTripper
	ctx  context.Context
}

func (t *cancellable) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.ctx.Err() != nil {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithCancel(req.Context())
	stop := context.AfterFunc(t.ctx, cancel)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		stop()
		cancel()
		return nil, err
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: func() { stop(); cancel() }}
	return resp, nil
}

type releasingBody struct {
	io.ReadCloser
	release func()
	once    sync.Once
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}
