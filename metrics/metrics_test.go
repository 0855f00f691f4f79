package metrics_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/internal/devconsul"
	"github.com/excalibur/consul-elect/internal/leakcheck"
	"github.com/excalibur/consul-elect/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leakcheck.Options()...) }

func TestMetricsFollowLeadershipAndHealthzFailsWhenRenewalsFail(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	reg := prometheus.NewRegistry()
	opts := consulelect.DefaultOptions()
	opts.ConsulAddress, opts.KeyPrefix, opts.CandidateID = agent.URL(), "metrics", "alpha"
	opts.Logger = zaptest.NewLogger(t)
	opts.SessionTTL, opts.LockDelay = 2*time.Second, 0
	m, err := metrics.New(reg, opts.Timing())
	if err != nil {
		t.Fatal(err)
	}
	opts.Observer = m
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := consulelect.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Stop(context.Background()) }()
	if err := e.Campaign("jobs", nil); err != nil {
		t.Fatal(err)
	}
	lead, err := e.AwaitLeadership(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	if got := value(t, reg, "consul_elect_is_leader", map[string]string{"resource": "jobs"}); got != 1 {
		t.Fatalf("is_leader %v; want 1", got)
	}
	if code := healthz(m); code != http.StatusOK {
		t.Fatalf("healthz %d while healthy", code)
	}
	if code := serve(m.Leader("jobs")); code != http.StatusOK {
		t.Fatalf("/leader %d on the leader; want 200", code)
	}
	if code := serve(m.Leader("other")); code != http.StatusServiceUnavailable {
		t.Fatalf("/leader of a resource it does not lead: %d; want 503", code)
	}

	// Freeze the agent: renewals fail, and past the step-down point healthz
	// says so.
	if err := agent.Pause(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(4 * opts.SessionTTL)
	for healthz(m) == http.StatusOK || value(t, reg, "consul_elect_session_renew_failures_total", nil) < 1 {
		if time.Now().After(deadline) {
			_ = agent.Resume()
			t.Fatal("healthz stayed OK (or no renew failure was counted) while renewals failed past the step-down point")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The leader fenced itself meanwhile.
	<-lead.Context.Done()
	if got := value(t, reg, "consul_elect_is_leader", map[string]string{"resource": "jobs"}); got != 0 {
		t.Fatalf("is_leader %v after the loss; want 0", got)
	}
	if code := serve(m.Leader("jobs")); code != http.StatusServiceUnavailable {
		t.Fatalf("/leader %d after the loss; want 503", code)
	}
	if n := count(t, reg, "consul_elect_term_duration_seconds"); n != 1 {
		t.Fatalf("%d terms observed; want 1", n)
	}
	lost := value(t, reg, "consul_elect_leadership_transitions_total", map[string]string{"resource": "jobs", "reason": "renew deadline"})
	if lost != 1 {
		t.Fatalf("transitions{reason=renew deadline} = %v; want 1", lost)
	}
	if err := agent.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.AwaitLeadership(ctx, "jobs"); err != nil {
		t.Fatal(err)
	}
	if code := healthz(m); code != http.StatusOK {
		t.Fatalf("healthz %d after recovering", code)
	}
}

func healthz(m *metrics.Metrics) int { return serve(m.Healthz()) }

func serve(h http.Handler) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	return rec.Code
}

// count is how many observations histogram name has, over all its series.
func count(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, f := range families {
		if f.GetName() == name {
			for _, metric := range f.GetMetric() {
				n += metric.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}

// value reads the series of metric name whose labels include want.
func value(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, metric := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range metric.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			switch {
			case metric.GetGauge() != nil:
				return metric.GetGauge().GetValue()
			case metric.GetCounter() != nil:
				return metric.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series %s%v", name, want)
	return 0
}
