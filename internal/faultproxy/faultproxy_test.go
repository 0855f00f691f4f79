package faultproxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/internal/faultproxy"
	"go.uber.org/goleak"
)

// agent stands for a Consul agent: /v1/kv/ is a blocking query that tells
// arrived it is waiting and answers when release is closed; everything else
// answers at once. The caller closes it.
func agent(release <-chan struct{}, arrived chan<- struct{}) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/kv/") {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		_, _ = io.WriteString(w, "agent: "+r.Method+" "+r.URL.Path)
	}))
}

type client struct {
	t    *testing.T
	http *http.Client
	base string
}

func (c client) do(method, path string) (int, string, error) {
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// want checks one request's answer.
func (c client) want(method, path string, status int, body string) {
	c.t.Helper()
	got, text, err := c.do(method, path)
	if err != nil || got != status || text != body {
		c.t.Fatalf("%s %s: %d %q (%v); want %d %q", method, path, got, text, err, status, body)
	}
}

func isRenew(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/session/renew/")
}

func TestBurstBeginsAtTheMatchingRequestAndSparesRequestsInFlight(t *testing.T) {
	defer goleak.VerifyNone(t)
	release, arrived := make(chan struct{}), make(chan struct{}, 1)
	target := agent(release, arrived)
	defer target.Close()
	p, err := faultproxy.Start(target.URL)
	if err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{}
	c := client{t: t, http: &http.Client{Transport: transport}, base: p.URL()}
	defer transport.CloseIdleConnections()
	defer p.Close()

	c.want("GET", "/v1/status/leader", 200, "agent: GET /v1/status/leader")

	// A blocking query in flight before the burst.
	type answer struct {
		status int
		body   string
		err    error
	}
	polled := make(chan answer, 1)
	go func() {
		status, body, err := c.do("GET", "/v1/kv/prefix/?index=7")
		polled <- answer{status, body, err}
	}()
	<-arrived

	burst := p.Arm(faultproxy.Fault{Status: 500, Body: "No cluster leader", For: 300 * time.Millisecond, When: isRenew})
	c.want("GET", "/v1/status/leader", 200, "agent: GET /v1/status/leader") // When does not accept it
	select {
	case <-burst.Began():
		t.Fatal("the burst began before a renewal")
	default:
	}
	c.want("PUT", "/v1/session/renew/abc", 500, "No cluster leader")
	<-burst.Began()
	if got := burst.Trigger(); got != "PUT /v1/session/renew/abc" {
		t.Fatalf("trigger %q", got)
	}
	c.want("GET", "/v1/status/leader", 500, "No cluster leader")

	close(release) // the blocking query answers during the burst, unharmed
	if got := <-polled; got.err != nil || got.status != 200 || got.body != "agent: GET /v1/kv/prefix/" {
		t.Fatalf("blocking query through the burst: %d %q (%v)", got.status, got.body, got.err)
	}
	select {
	case <-burst.Ended():
	case <-time.After(5 * time.Second):
		t.Fatal("the burst did not end")
	}
	if d := burst.EndedAt().Sub(burst.BeganAt()); d < 300*time.Millisecond {
		t.Fatalf("the burst lasted %s; want 300ms", d)
	}
	c.want("PUT", "/v1/session/renew/abc", 200, "agent: PUT /v1/session/renew/abc")
	if n := burst.Answered(); n != 2 {
		t.Fatalf("the burst answered %d requests; want 2", n)
	}
}

func TestBurstAffectsOnlyTheRequestsItPicks(t *testing.T) {
	defer goleak.VerifyNone(t)
	target := agent(nil, nil)
	defer target.Close()
	p, err := faultproxy.Start(target.URL)
	if err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{}
	c := client{t: t, http: &http.Client{Transport: transport}, base: p.URL()}
	defer transport.CloseIdleConnections()
	defer p.Close()

	burst := p.Arm(faultproxy.Fault{Status: http.StatusTooManyRequests, For: time.Hour, Affects: isRenew})
	c.want("GET", "/v1/agent/self", 429, "Too Many Requests") // no When: the next request begins it
	c.want("GET", "/v1/agent/self", 200, "agent: GET /v1/agent/self")
	c.want("PUT", "/v1/session/renew/abc", 429, "Too Many Requests")

	// Armed again during the burst: waits for it to end.
	next := p.Arm(faultproxy.Fault{Status: 500, For: time.Hour})
	c.want("GET", "/v1/agent/self", 200, "agent: GET /v1/agent/self")
	select {
	case <-next.Began():
		t.Fatal("a second burst began during the first")
	default:
	}
	// Armed again before it began: it ends without beginning.
	third := p.Arm(faultproxy.Fault{Status: 503, For: time.Hour})
	select {
	case <-next.Ended():
	default:
		t.Fatal("a replaced fault's burst did not end")
	}
	if !next.BeganAt().IsZero() || next.Answered() != 0 {
		t.Fatal("a replaced fault's burst began")
	}
	// The agent's own answers are counted by status; the bursts' are not.
	if passed, made := p.Passed(http.StatusOK), p.Passed(http.StatusTooManyRequests); passed != 2 || made != 0 {
		t.Fatalf("passed %d answers 200 and %d answers 429; want 2 and 0", passed, made)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*faultproxy.Burst{burst, third} {
		select {
		case <-b.Ended():
		default:
			t.Fatal("Close left a burst open")
		}
	}
}

func TestCloseEndsBlockingQueriesInFlight(t *testing.T) {
	defer goleak.VerifyNone(t)
	arrived := make(chan struct{}, 1)
	target := agent(make(chan struct{}), arrived) // never answers by itself
	defer target.Close()
	p, err := faultproxy.Start(target.URL)
	if err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{}
	c := client{t: t, http: &http.Client{Transport: transport}, base: p.URL()}
	defer transport.CloseIdleConnections()

	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _, _ = c.do("GET", "/v1/kv/prefix/?index=7&wait=5m")
	}()
	<-arrived
	closed := time.Now()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	if d := time.Since(closed); d > 3*time.Second {
		t.Fatalf("Close took %s with a blocking query in flight", d)
	}
	if _, _, err := c.do("GET", "/v1/agent/self"); err == nil {
		t.Fatal("the proxy still answers after Close")
	}
}
