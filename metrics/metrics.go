// Package metrics exposes an election engine's state to Prometheus and a
// /healthz handler. Register it on your registry and pass it as
// Options.Observer:
//
//	m, err := metrics.New(prometheus.DefaultRegisterer, opts.Timing())
//	opts.Observer = m
//	http.Handle("/healthz", m.Healthz())
//	http.Handle("/leader", m.Leader("orders")) // 200 on the leader only
package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics implements actors.Observer.
type Metrics struct {
	// staleAfter is the engine's step-down point: a leader that has not
	// renewed for that long has stepped down.
	staleAfter    time.Duration
	isLeader      *prometheus.GaugeVec
	transitions   *prometheus.CounterVec
	renewLatency  prometheus.Histogram
	renewFailures prometheus.Counter
	consulErrors  *prometheus.CounterVec
	leaderless    *prometheus.HistogramVec
	termDuration  *prometheus.HistogramVec
	switchovers   *prometheus.CounterVec

	mu       sync.Mutex
	lastOK   time.Time // last successful renew (or session creation) sent
	started  time.Time
	lastFail error                // the last failure, for Healthz's answer
	leading  map[string]time.Time // resource → when this candidate's term began
	freed    map[string]time.Time // resource → when it was seen without a leader
}

// durations are the buckets of the leaderless and term histograms, in seconds.
var durations = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 3600}

// New registers the metrics on reg. timing is the engine's
// (Options.Timing()): Healthz fails once no renewal has succeeded for
// Timing.StepDownAfter, when a leader would have stepped down.
func New(reg prometheus.Registerer, timing actors.Timing) (*Metrics, error) {
	m := &Metrics{
		staleAfter: timing.StepDownAfter,
		started:    time.Now(),
		leading:    map[string]time.Time{},
		freed:      map[string]time.Time{},
		leaderless: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "consul_elect_leaderless_seconds",
			Help:    "How long a resource had no leader, as this candidate saw it: from the key seen free to the next leader seen.",
			Buckets: durations,
		}, []string{"resource"}),
		termDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "consul_elect_term_duration_seconds", Help: "How long this candidate's terms of leadership lasted.", Buckets: durations,
		}, []string{"resource"}),
		switchovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consul_elect_switchovers_total", Help: "Terms of this candidate that ended in a planned handover (switchover or preemption).",
		}, []string{"resource"}),
		isLeader: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "consul_elect_is_leader", Help: "1 while this candidate leads the resource, else 0.",
		}, []string{"resource"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consul_elect_leadership_transitions_total",
			Help: "Leadership acquired (reason \"acquired\") and lost (by reason), per resource.",
		}, []string{"resource", "reason"}),
		renewLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "consul_elect_session_renew_duration_seconds",
			Help:    "Time a session renewal took, successful or not.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		renewFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "consul_elect_session_renew_failures_total", Help: "Session renewals that failed.",
		}),
		consulErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consul_elect_consul_errors_total",
			Help: "Consul requests that failed, by operation and kind (transient, permission_denied, session_gone, lock_held, lock_delay, conflict, rejected).",
		}, []string{"op", "kind"}),
	}
	sinceRenew := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "consul_elect_seconds_since_last_renew",
		Help: "Seconds since the last successful session renewal (or creation) was sent.",
	}, func() float64 { return time.Since(m.lastRenew()).Seconds() })
	for _, c := range []prometheus.Collector{m.isLeader, m.transitions, m.renewLatency, m.renewFailures, m.consulErrors,
		m.leaderless, m.termDuration, m.switchovers, sinceRenew} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering consul-elect metrics: %w", err)
		}
	}
	return m, nil
}

// Event records leadership events.
func (m *Metrics) Event(evt messages.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch e := evt.(type) {
	case messages.LeadershipAcquired:
		m.isLeader.WithLabelValues(e.Resource).Set(1)
		m.transitions.WithLabelValues(e.Resource, "acquired").Inc()
		m.leading[e.Resource] = e.At
	case messages.LeadershipLost:
		m.isLeader.WithLabelValues(e.Resource).Set(0)
		m.transitions.WithLabelValues(e.Resource, string(e.Reason)).Inc()
		if began, ok := m.leading[e.Resource]; ok {
			m.termDuration.WithLabelValues(e.Resource).Observe(e.At.Sub(began).Seconds())
			delete(m.leading, e.Resource)
		}
		if e.Reason == messages.ReasonSwitchover {
			m.switchovers.WithLabelValues(e.Resource).Inc()
		}
	case messages.LeaderChanged:
		freed, wasFree := m.freed[e.Resource]
		switch {
		case e.LeaderID == "" && !wasFree:
			m.freed[e.Resource] = time.Now()
		case e.LeaderID != "" && wasFree:
			m.leaderless.WithLabelValues(e.Resource).Observe(time.Since(freed).Seconds())
			delete(m.freed, e.Resource)
		}
	}
}

// Leader answers 200 while this candidate leads resource and 503 otherwise:
// a check for load balancers (HAProxy, Envoy) in front of the candidates.
func (m *Metrics) Leader(resource string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		m.mu.Lock()
		_, leading := m.leading[resource]
		m.mu.Unlock()
		if !leading {
			http.Error(w, "not the leader of "+resource, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "leader of", resource)
	})
}

// Refreshed records a session renewal (or creation) sent at sentAt that
// took took and failed with err (nil: succeeded).
func (m *Metrics) Refreshed(sentAt time.Time, took time.Duration, err error) {
	if took > 0 {
		m.renewLatency.Observe(took.Seconds())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.renewFailures.Inc()
		m.lastFail = err
		return
	}
	if sentAt.After(m.lastOK) {
		m.lastOK = sentAt
	}
}

// ConsulError counts a failed Consul request.
func (m *Metrics) ConsulError(op string, err error) {
	m.consulErrors.WithLabelValues(op, Kind(err)).Inc()
}

func (m *Metrics) lastRenew() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastOK.IsZero() {
		return m.started
	}
	return m.lastOK
}

// Healthz answers 200 while renewals succeed, and 503 once no renewal (or
// session creation) has succeeded for longer than the step-down point (the
// same idea as client-go's leader-election healthz adaptor).
func (m *Metrics) Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		m.mu.Lock()
		lastFail := m.lastFail
		m.mu.Unlock()
		// Renewals come twice before the step-down point: none since
		// means renewals (or creating a session) are failing or hanging.
		since := time.Since(m.lastRenew())
		if since > m.staleAfter {
			http.Error(w, fmt.Sprintf("session renewals failing for %s (the step-down point is %s): %v", since.Round(time.Millisecond), m.staleAfter, lastFail),
				http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

// Kind names the class of a Consul error for the errors metric.
func Kind(err error) string {
	for _, k := range []struct {
		err  error
		name string
	}{
		{consul.ErrPermissionDenied, "permission_denied"}, {consul.ErrSessionGone, "session_gone"},
		{consul.ErrLockHeld, "lock_held"}, {consul.ErrLockDelay, "lock_delay"},
		{consul.ErrConflict, "conflict"}, {consul.ErrRejected, "rejected"},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "transient"
}
