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
	// DefaultDrainTimeout leaves the leader's work time to finish what it
	// is doing before a standby may start.
	DefaultDrainTimeout = 10 * time.Second
	// PreemptAfter is how long a term lasts, at least, before Preempt hands
	// it over: a candidate that has just taken over is not moved at once.
	PreemptAfter = 5 * time.Second
	// DefaultMaxConnections leaves room for the blocking queries (a key
	// watch per shard, the registry watch, a health watch) and for
	// renewals, acquires and releases beside them; four processes on one
	// host stay far below the agent's 200 connections per client IP.
	DefaultMaxConnections = 16
	// MinMaxConnections leaves room for one key watch, the registry watch
	// and a health watch, and the two connections kept from blocking
	// queries.
	MinMaxConnections = 5
	// BalanceSlack is how many resources above its fair share a candidate
	// with Balance leads before it hands one over: a little room, so that
	// leadership does not flap as candidates come and go.
	BalanceSlack = 1

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
	// W − (W/10 + SelfFenceMargin), W the fence window (and likewise with
	// FastFailover's check TTL as W); see Timing. Set it to the time your
	// leader's work needs to stop (the CLI sets its --kill-grace). It must
	// leave more than half of each window: W/10 + SelfFenceMargin < W/2.
	SelfFenceMargin time.Duration
	// DrainTimeout bounds how long a voluntary end of a term (Resign,
	// Withdraw, Stop, the end of Election.Run) waits for the leader's work
	// (Campaign.Worker, Run's function) to stop before releasing the key
	// anyway, with a warning. 0: release as soon as the work is told to stop.
	DrainTimeout time.Duration

	// FastFailover registers a per-candidate service with a TTL check of
	// FastFailoverTTL on the local agent, updates it within the check's own
	// fence window (Timing.CheckUpdateEvery), binds the
	// session to it and deregisters it on Stop. A candidate that dies loses
	// its session when the check goes critical (FastFailoverTTL) instead of
	// when Consul reaps the session (up to 2×SessionTTL).
	FastFailover bool
	// FastFailoverTTL: in [1s, SessionTTL]; 0 means 2s.
	FastFailoverTTL time.Duration

	// Priority orders the candidates (higher first, default 0): when a key is
	// freed, a waiting candidate holds back while a live, healthy one of
	// higher priority waits for it too, so that the highest gets it.
	Priority int
	// Preempt makes a leader hand over (a switchover: drain, then hand over)
	// to a live, healthy candidate of higher priority that campaigns for its
	// resource, once its term has lasted PreemptAfter; so leadership goes
	// back to the preferred candidate once, without flapping.
	Preempt bool

	// Balance keeps leadership fair among the candidates that campaign for
	// the same resources: with P live, healthy candidates for K resources,
	// each leads at most ⌈K/P⌉ (plus BalanceSlack), handing the excess over
	// (a switchover: drain, then hand over) to a candidate below its share,
	// and leaving free keys to those below theirs. Off by default.
	Balance bool

	// ReleaseOnly makes a planned end of a term (Resign, Withdraw, Stop, a
	// switchover) only release the key, for the others to race for, as
	// api.Lock does. By default the leader hands the key to a successor in
	// the write that releases it: one write where a release and an acquire
	// are two, but a successor that is frozen at that moment (its session
	// alive) keeps the key until it runs again or its session ends.
	ReleaseOnly bool

	// MaxConnections bounds the requests this engine has in flight to its
	// agent at once, blocking queries included (Consul's
	// http_max_conns_per_client, 200 by default, counts every process on a
	// host together). Blocking queries take at most MaxConnections − 2 of
	// them and writes at most MaxConnections − 1, so that renewals always
	// go through; the key watch is split into shards (each one blocking
	// query) within MaxConnections − 4. Between 5 and 64; DefaultOptions
	// sets 16.
	MaxConnections int

	// Service, with a Name, routes clients to the leader through Consul: the
	// engine registers this candidate as an instance of that service on the
	// local agent, tagged "leader" while it leads and "standby" otherwise,
	// so that leader.NAME.service.consul and
	// /v1/health/service/NAME?tag=leader&passing name exactly the leader.
	Service ServiceOptions

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

// ServiceOptions describe the service instance of Options.Service.
type ServiceOptions struct {
	// Name of the service; empty: no service is registered.
	Name string
	// Address and Port of this candidate's instance; empty Address: the
	// agent's.
	Address string
	Port    int
	// Resource whose leader is tagged "leader"; empty: the instance is
	// tagged "leader" while this candidate leads any resource.
	Resource string
	// CheckTTL is the TTL of the instance's check, which the engine keeps
	// passing: a killed candidate's instance goes critical within it. 0: 10s.
	CheckTTL time.Duration
}

// DefaultServiceCheckTTL is ServiceOptions.CheckTTL when unset.
const DefaultServiceCheckTTL = 10 * time.Second

func (s ServiceOptions) checkTTL() time.Duration {
	if s.CheckTTL == 0 {
		return DefaultServiceCheckTTL
	}
	return s.CheckTTL
}

// instance is the candidate's instance of the service, tagged leader or not.
func (s ServiceOptions) instance(candidateID string, leader bool) consul.Service {
	id := s.Name + "-" + candidateID
	tag := "standby"
	if leader {
		tag = "leader"
	}
	return consul.Service{ID: id, Name: s.Name, Tags: []string{tag}, Meta: map[string]string{"candidate_id": candidateID},
		Address: s.Address, Port: s.Port, CheckID: id + "-alive", CheckTTL: s.checkTTL()}
}

// DefaultOptions returns the seed's defaults.
func DefaultOptions() Options {
	return Options{KeyPrefix: DefaultKeyPrefix, SessionTTL: DefaultSessionTTL, LockDelay: DefaultLockDelay,
		DrainTimeout: DefaultDrainTimeout, MaxConnections: DefaultMaxConnections}
}

// ConsulConfig is how these options reach Consul: the one mapping of the
// options to a consul.Config (consul.NewClient).
func (o Options) ConsulConfig() consul.Config {
	return consul.Config{Address: o.ConsulAddress, Datacenter: o.Datacenter, Token: o.Token, TokenFile: o.TokenFile, TLS: o.TLS,
		MaxConnections: o.MaxConnections}
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
	timing := o.Timing()
	if window := timing.FenceWindow; o.SelfFenceMargin < 0 || (window > 0 && timing.StepDownAfter <= window/2) {
		bad("SelfFenceMargin is %s; it must be between 0s and %s for the fence window %s (min(SessionTTL, LockDelay)): a leader that cannot renew steps down at window − window/10 − SelfFenceMargin, which must be later than half the window; lower SelfFenceMargin or raise SessionTTL and LockDelay",
			o.SelfFenceMargin, maxMargin(window), window)
	}
	if o.DrainTimeout < 0 {
		bad("DrainTimeout is %s; it must not be negative (DefaultOptions sets %s)", o.DrainTimeout, DefaultDrainTimeout)
	}
	if o.FastFailover {
		ttl := timing.CheckTTL
		if ttl < MinSessionTTL || ttl > max(o.SessionTTL, MinSessionTTL) {
			bad("FastFailoverTTL is %s; it must be between %s and SessionTTL (%s)", ttl, MinSessionTTL, o.SessionTTL)
		}
		if o.SelfFenceMargin >= 0 && timing.CheckStepDownAfter <= ttl/2 {
			bad("SelfFenceMargin is %s; with FastFailover it must be at most %s for FastFailoverTTL %s (the check's step-down point, TTL − TTL/10 − SelfFenceMargin, must be later than half its TTL); lower SelfFenceMargin or raise FastFailoverTTL",
				o.SelfFenceMargin, maxMargin(ttl), ttl)
		}
		if o.Datacenter != "" {
			bad("FastFailover cannot be used with Datacenter: the check lives on the local agent")
		}
	}
	if o.MaxConnections < MinMaxConnections || o.MaxConnections > 64 {
		bad("MaxConnections is %d; it must be between %d and 64 (DefaultOptions sets %d)", o.MaxConnections, MinMaxConnections, DefaultMaxConnections)
	}
	if svc := o.Service; svc.Name != "" {
		if strings.TrimSpace(svc.Name) != svc.Name || strings.ContainsAny(svc.Name, "/ ") {
			bad("Service.Name %q must have no spaces or '/'", svc.Name)
		}
		if svc.Port < 0 || svc.Port > 65535 {
			bad("Service.Port is %d; it must be between 0 and 65535", svc.Port)
		}
		if svc.CheckTTL != 0 && svc.CheckTTL < time.Second {
			bad("Service.CheckTTL is %s; it must be at least 1s (0: %s)", svc.CheckTTL, DefaultServiceCheckTTL)
		}
		if svc.Resource != "" {
			if err := ValidateResource(svc.Resource); err != nil {
				bad("Service.Resource: %v", err)
			}
		}
		if o.Datacenter != "" {
			bad("Service cannot be used with Datacenter: the instance lives on the local agent")
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

// DefaultFastFailoverTTL is the fast-failover check's TTL when unset.
const DefaultFastFailoverTTL = 2 * time.Second

// Timing is when an engine with these options renews its session, retries,
// and steps down: the one source of these figures for the engine, the
// command-line tool, metrics and healthz. Every duration counts from when the
// last successful renewal (or check update) was sent.
type Timing struct {
	// FenceWindow (W) is how long after the last renewal was sent another
	// candidate may, at the earliest, acquire a key of this candidate's
	// session without it having heard. The session's checks (serfHealth of
	// its node, HealthCheckID) can invalidate it at any moment, and only
	// LockDelay then keeps others out; TTL expiry cannot come before
	// SessionTTL. So W is min(SessionTTL, LockDelay).
	//
	// With LockDelay under MinFencedLockDelay (0 in tests, or to fail over
	// fastest) W is SessionTTL: a failure of the leader's node, or of the
	// agent it talks to, can then hand leadership over before the leader can
	// know, and only fencing tokens protect what it writes to.
	FenceWindow time.Duration
	// StepDownAfter is when a leader that could not renew steps down:
	// W − W/10 − SelfFenceMargin. W/10 allows for clocks running at
	// different rates; SelfFenceMargin is the time the leader's work needs
	// to stop.
	StepDownAfter time.Duration
	// RenewEvery is the interval between renewals: StepDownAfter/2, so that
	// the second half of the window is left for retries.
	RenewEvery time.Duration
	// RetryEvery is the interval between attempts once a renewal has failed
	// with a transient error (HTTP 5xx or 429, a transport error):
	// StepDownAfter/10, between 100ms and 1s. A denied token is retried no
	// more than once a second.
	RetryEvery time.Duration
	// MaxSelfFenceMargin is the largest SelfFenceMargin these options
	// accept (rounded down to 100ms): a step-down point later than half
	// of every window.
	MaxSelfFenceMargin time.Duration

	// With FastFailover, the same for the candidate's check: its TTL (C),
	// the step-down point C − C/10 − SelfFenceMargin after the last update
	// was sent, the update interval (half of that) and the retry interval.
	// Zero without FastFailover.
	CheckTTL           time.Duration
	CheckStepDownAfter time.Duration
	CheckUpdateEvery   time.Duration
	CheckRetryEvery    time.Duration
}

// Timing returns the timing of these options; see Timing.
func (o Options) Timing() Timing {
	window := o.SessionTTL
	if o.LockDelay >= MinFencedLockDelay && o.LockDelay < o.SessionTTL {
		window = o.LockDelay
	}
	t := Timing{FenceWindow: window}
	t.StepDownAfter, t.RenewEvery, t.RetryEvery = o.schedule(window)
	t.MaxSelfFenceMargin = maxMargin(window)
	if o.FastFailover {
		t.CheckTTL = o.failoverTTL()
		t.CheckStepDownAfter, t.CheckUpdateEvery, t.CheckRetryEvery = o.schedule(t.CheckTTL)
		t.MaxSelfFenceMargin = min(t.MaxSelfFenceMargin, maxMargin(t.CheckTTL))
	}
	return t
}

// schedule is the step-down point, refresh interval and retry interval for
// one deadline window.
func (o Options) schedule(window time.Duration) (stepDownAfter, every, retry time.Duration) {
	stepDownAfter = window - window/10 - o.SelfFenceMargin
	every = stepDownAfter / 2
	retry = min(max(stepDownAfter/10, 100*time.Millisecond), time.Second)
	return stepDownAfter, every, retry
}

// maxMargin is the largest SelfFenceMargin that leaves a step-down point
// later than half of window, rounded down to 100ms.
func maxMargin(window time.Duration) time.Duration {
	limit := window*2/5 - 1 // SelfFenceMargin + W/10 < W/2
	return max(limit.Truncate(100*time.Millisecond), 0)
}

// stopBy is when work started as leader must be gone, for a session last
// renewed at renewedAt and a check last updated at fedAt (zero: unknown).
func (t Timing) stopBy(renewedAt, fedAt time.Time) time.Time {
	if renewedAt.IsZero() {
		return time.Time{}
	}
	at := renewedAt.Add(t.FenceWindow - t.FenceWindow/10)
	if t.CheckTTL > 0 && !fedAt.IsZero() {
		at = minTime(at, fedAt.Add(t.CheckTTL-t.CheckTTL/10))
	}
	return at
}

func (o Options) failoverTTL() time.Duration {
	if o.FastFailoverTTL == 0 {
		return DefaultFastFailoverTTL
	}
	return o.FastFailoverTTL
}

// failoverCheck is the candidate's fast-failover service and its check.
func (o Options) failoverCheck() consul.Service {
	id := "consul-elect-" + o.CandidateID
	return consul.Service{ID: id, Name: "consul-elect", CheckID: id + "-alive", CheckTTL: o.failoverTTL()}
}
