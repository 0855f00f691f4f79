package actors

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"go.uber.org/zap"
)

// Defaults, next to the options they fill.
const (
	DefaultKeyPrefix  = "excalibur/leader-election"
	DefaultSessionTTL = 30 * time.Second
	DefaultLockDelay  = 15 * time.Second

	MinSessionTTL = time.Second
	MaxSessionTTL = 24 * time.Hour
	MaxLockDelay  = 60 * time.Second // Consul's own maximum

	maxPrefixLength   = 256
	maxResourceLength = 128
)

// Options configure one election engine: one candidate with one Consul
// session, electing any number of resources. Start from DefaultOptions: every
// field is taken as given (LockDelay 0 means no lock-delay at all).
//
// SessionTTL, LockDelay and HealthCheckID shape the shared session, so they
// hold for every resource of the engine. Run several engines for different
// settings; each is a separate candidate with its own session.
type Options struct {
	// ConsulAddress: host:port, http(s)://host:port or unix:///path.
	// Empty: CONSUL_HTTP_ADDR, else http://localhost:8500.
	ConsulAddress string
	// Datacenter to elect in; empty: the agent's own. A session in another
	// datacenter must be created through a server agent and carries no
	// health checks (TTL only), so HealthCheckID is refused with it.
	Datacenter string
	// Token is the ACL token; empty: CONSUL_HTTP_TOKEN. TokenFile is read
	// instead when set (empty: CONSUL_HTTP_TOKEN_FILE). Tokens are never logged.
	Token     string
	TokenFile string
	// TLS to the agent; empty fields: CONSUL_CACERT, CONSUL_CAPATH,
	// CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME.
	TLS consul.TLSConfig

	// KeyPrefix: lock keys are <KeyPrefix>/<resource>.
	KeyPrefix string
	// SessionTTL: in [1s, 24h]; Consul servers refuse TTLs below their
	// session_ttl_min (10s by default).
	SessionTTL time.Duration
	// LockDelay: in [0, 60s]. After a session is invalidated, Consul keeps
	// its keys from being locked for this long. A resign or a stop releases
	// explicitly, without lock-delay.
	LockDelay time.Duration
	// HealthCheckID binds the session to this check of the local agent (in
	// addition to serfHealth): when it goes critical, the session is
	// invalidated and the leader steps down.
	HealthCheckID string
	// SelfFenceMargin is extra time, on top of 10% of the fence window, by
	// which a leader that cannot renew steps down early: at lastRenewSent +
	// W − (W/10 + SelfFenceMargin), W = FenceWindow (and likewise with
	// FastFailover's check TTL as W). Set it to the time your leader's work
	// needs to stop (the CLI sets its --kill-grace). It must leave at least
	// half of each window: W/10 + SelfFenceMargin < W/2.
	SelfFenceMargin time.Duration

	// FastFailover registers a per-candidate service with a TTL check of
	// FastFailoverTTL on the local agent, refreshes it every TTL/2, binds the
	// session to it and deregisters it on Stop. A candidate that dies loses
	// its session when the check goes critical (FastFailoverTTL) instead of
	// when Consul reaps the session (up to 2×SessionTTL).
	FastFailover bool
	// FastFailoverTTL: in [1s, SessionTTL]; 0 means 2s.
	FastFailoverTTL time.Duration

	// CandidateID names this candidate in the key's value and in events.
	// Empty: <hostname>-<pid>, with -2, -3, … for further engines in one process.
	CandidateID string
	// Metadata is written with the candidate id into the key's value.
	Metadata map[string]string
	// Resources are campaigned for as soon as the engine starts.
	Resources []string

	// Logger receives the engine's logs; nil: none.
	Logger *zap.Logger
	// Observer, when set, is told of every event, session refresh and
	// Consul error (package metrics implements it for Prometheus). It is
	// called on the actors' goroutines and must return at once.
	Observer Observer
	// Backend replaces the Consul client built from the options above (an
	// in-memory backend for tests, or an instrumented client).
	Backend Backend
}

// DefaultOptions returns the seed's defaults.
func DefaultOptions() Options {
	return Options{KeyPrefix: DefaultKeyPrefix, SessionTTL: DefaultSessionTTL, LockDelay: DefaultLockDelay}
}

// Validate checks every option before anything is sent to Consul. The error
// lists each violation, naming the option and what it allows.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if o.SessionTTL < MinSessionTTL || o.SessionTTL > MaxSessionTTL {
		bad("SessionTTL is %s; it must be between %s and %s (DefaultOptions sets %s)", o.SessionTTL, MinSessionTTL, MaxSessionTTL, DefaultSessionTTL)
	}
	if o.LockDelay < 0 || o.LockDelay > MaxLockDelay {
		bad("LockDelay is %s; it must be between 0s and %s", o.LockDelay, MaxLockDelay)
	}
	if window := o.FenceWindow(); o.SelfFenceMargin < 0 || (window > 0 && o.selfFenceMargin(window) >= window/2) {
		bad("SelfFenceMargin is %s; it must be at least 0s and less than %s (the fence window min(SessionTTL, LockDelay) = %s, less its 10%% margin, halved)",
			o.SelfFenceMargin, window*2/5, window)
	}
	if o.FastFailover {
		ttl := o.failoverTTL()
		if ttl < MinSessionTTL || ttl > max(o.SessionTTL, MinSessionTTL) {
			bad("FastFailoverTTL is %s; it must be between %s and SessionTTL (%s)", ttl, MinSessionTTL, o.SessionTTL)
		}
		if o.selfFenceMargin(ttl) >= ttl/2 {
			bad("SelfFenceMargin is %s; with FastFailover it must be less than %s (FastFailoverTTL %s, less its 10%% margin, halved)",
				o.SelfFenceMargin, ttl*2/5, ttl)
		}
		if o.Datacenter != "" {
			bad("FastFailover cannot be used with Datacenter: the check lives on the local agent")
		}
	}
	if err := ValidatePrefix(o.KeyPrefix); err != nil {
		bad("KeyPrefix: %v", err)
	}
	for _, r := range o.Resources {
		if err := ValidateResource(r); err != nil {
			bad("Resources: %v", err)
		}
	}
	if err := consul.ValidateAddress(o.ConsulAddress); err != nil {
		bad("ConsulAddress: %v", err)
	}
	if o.Token != "" && o.TokenFile != "" {
		bad("Token and TokenFile are both set; set one")
	}
	if strings.TrimSpace(o.HealthCheckID) != o.HealthCheckID {
		bad("HealthCheckID %q has leading or trailing spaces", o.HealthCheckID)
	}
	if strings.ContainsAny(o.CandidateID, "\x00\n\r") || len(o.CandidateID) > 256 {
		bad("CandidateID must be at most 256 characters with no control characters")
	}
	return errors.Join(errs...)
}

// ValidatePrefix checks a key prefix: segments of letters, digits, '-', '_'
// and '.' separated by single '/', not starting or ending with '/', no '.' or
// '..' segment, at most 256 characters.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return errors.New("the key prefix is empty")
	}
	if len(prefix) > maxPrefixLength {
		return fmt.Errorf("the key prefix is %d characters; at most %d", len(prefix), maxPrefixLength)
	}
	if strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("key prefix %q must not start or end with '/'", prefix)
	}
	for _, segment := range strings.Split(prefix, "/") {
		if err := validateSegment(segment); err != nil {
			return fmt.Errorf("key prefix %q: %v", prefix, err)
		}
	}
	return nil
}

// ValidateResource checks a resource name: one key segment of letters,
// digits, '-', '_' and '.', not '.' or '..', at most 128 characters.
func ValidateResource(resource string) error {
	if resource == "" {
		return errors.New("the resource name is empty")
	}
	if len(resource) > maxResourceLength {
		return fmt.Errorf("resource name is %d characters; at most %d", len(resource), maxResourceLength)
	}
	if err := validateSegment(resource); err != nil {
		return fmt.Errorf("resource %q: %v", resource, err)
	}
	return nil
}

func validateSegment(s string) error {
	switch s {
	case "":
		return errors.New("empty segment ('//')")
	case ".", "..":
		return fmt.Errorf("segment %q is not allowed", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("character %q is not allowed (letters, digits, '-', '_', '.')", r)
		}
	}
	return nil
}

// engineCount numbers the engines of this process for default candidate ids.
var engineCount atomic.Int64

func defaultCandidateID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	id := fmt.Sprintf("%s-%d", host, os.Getpid())
	if n := engineCount.Add(1); n > 1 {
		id = fmt.Sprintf("%s-%d", id, n)
	}
	return id
}

// MinFencedLockDelay is the smallest LockDelay the self-fence window follows.
const MinFencedLockDelay = time.Second

// FenceWindow is how long after the last renewal was sent another candidate
// may, at the earliest, acquire a key of this candidate's session without it
// having heard: the session's checks (serfHealth of its node, HealthCheckID)
// can invalidate it at any moment, and only LockDelay then keeps others out;
// TTL expiry cannot come before SessionTTL. So the window is
// min(SessionTTL, LockDelay). The leader renews every (window − margin)/2 and
// steps down at lastRenewSent + window − margin.
//
// With LockDelay under MinFencedLockDelay (0 in tests, or to fail over
// fastest) the window is SessionTTL: a failure of the leader's node, or of
// the agent it talks to, can then hand leadership over before the leader can
// know, and only fencing tokens protect what it writes to.
func (o Options) FenceWindow() time.Duration {
	if o.LockDelay >= MinFencedLockDelay && o.LockDelay < o.SessionTTL {
		return o.LockDelay
	}
	return o.SessionTTL
}

// DefaultFastFailoverTTL is the fast-failover check's TTL when unset.
const DefaultFastFailoverTTL = 2 * time.Second

// selfFenceMargin is the margin in force before a deadline window after the
// last successful refresh.
func (o Options) selfFenceMargin(window time.Duration) time.Duration {
	return window/10 + o.SelfFenceMargin
}

// renewEvery is how often the session is renewed: twice per fence window
// (margin deducted), so that one failed renewal leaves time for retries.
func (o Options) renewEvery() time.Duration {
	window := o.FenceWindow()
	return (window - o.selfFenceMargin(window)) / 2
}

func (o Options) failoverTTL() time.Duration {
	if o.FastFailoverTTL == 0 {
		return DefaultFastFailoverTTL
	}
	return o.FastFailoverTTL
}

// failoverCheck names the candidate's fast-failover service and check.
func (o Options) failoverCheck() consul.FailoverCheck {
	id := "consul-elect-" + o.CandidateID
	return consul.FailoverCheck{ServiceID: id, CheckID: id + "-alive", TTL: o.failoverTTL()}
}
