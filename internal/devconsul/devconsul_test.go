package devconsul

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine (log copiers, process
// waiters, HTTP connections) outlives the agents that started it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// client has no keep-alives so that idle connections do not count as leaks.
var client = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// do sends one request with an optional token and returns status and body.
func do(t *testing.T, a *Agent, method, path, token, body string) (int, string) {
	t.Helper()
	status, resp, err := tryDo(t.Context(), a, method, path, token, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return status, resp
}

func tryDo(ctx context.Context, a *Agent, method, path, token, body string) (int, string, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.URL()+path, r)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// datacenters returns the sorted /v1/catalog/datacenters of a. (-dev agents
// pretty-print JSON, so compare decoded values, never text.)
func datacenters(t *testing.T, a *Agent) []string {
	t.Helper()
	status, body := do(t, a, http.MethodGet, "/v1/catalog/datacenters", "", "")
	var dcs []string
	if err := json.Unmarshal([]byte(body), &dcs); status != http.StatusOK || err != nil {
		t.Fatalf("datacenters: %d %q: %v", status, body, err)
	}
	slices.Sort(dcs)
	return dcs
}

// TestDevAgent: the zero Config gives a ready -dev agent in dc1 that
// accepts a 1s session TTL (Consul's stock minimum is 10s), and Stop shuts
// it down for good, idempotently.
func TestDevAgent(t *testing.T) {
	t.Parallel()
	a := ForTest(t, Config{})

	if got := a.URL(); got != "http://"+a.HTTPAddr() || !strings.HasPrefix(a.HTTPAddr(), "127.0.0.1:") {
		t.Fatalf("URL %q, HTTPAddr %q: want loopback", got, a.HTTPAddr())
	}
	if dcs := datacenters(t, a); !slices.Equal(dcs, []string{"dc1"}) {
		t.Fatalf("datacenters %v, want [dc1]", dcs)
	}

	status, body := do(t, a, http.MethodPut, "/v1/session/create", "", `{"TTL":"1s"}`)
	if status != http.StatusOK {
		t.Fatalf("create session with TTL 1s: %d %s (is session_ttl_min set?)", status, body)
	}
	var created struct{ ID string }
	if err := json.Unmarshal([]byte(body), &created); err != nil || created.ID == "" {
		t.Fatalf("session create answer %q: %v", body, err)
	}
	status, body = do(t, a, http.MethodGet, "/v1/session/info/"+created.ID, "", "")
	var info []struct{ TTL string }
	if err := json.Unmarshal([]byte(body), &info); status != http.StatusOK || err != nil || len(info) != 1 || info[0].TTL != "1s" {
		t.Fatalf("session info: %d %s (%v), want one session with TTL 1s", status, body, err)
	}

	// Control: Consul's stock 10s minimum rejects the same request, so the
	// 1s TTL above is the harness's doing. This also shows ExtraHCL wins.
	strict := ForTest(t, Config{ExtraHCL: `session_ttl_min = "10s"`})
	// (Consul 1.14 answers this client error with a 500.)
	if status, body := do(t, strict, http.MethodPut, "/v1/session/create", "", `{"TTL":"1s"}`); status == http.StatusOK || !strings.Contains(body, "Invalid Session TTL") {
		t.Fatalf("session TTL 1s with session_ttl_min = 10s: %d %s, want Invalid Session TTL", status, body)
	}

	addr := a.HTTPAddr()
	if err := a.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := a.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = c.Close()
		t.Fatalf("%s still accepts connections after Stop", addr)
	}
	if err := a.Restart(t.Context()); err == nil {
		t.Fatal("Restart after Stop succeeded")
	}
}

// TestRestartKeepsDataDir: with a DataDir the agent is a real server whose
// KV data survives a restart on the same address. ACLs are on because that
// is the harder case: the restarted agent must find its tokens again.
func TestRestartKeepsDataDir(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	a := ForTest(t, Config{DataDir: dataDir, ACLDefaultDeny: true})
	token := a.ManagementToken

	if status, body := do(t, a, http.MethodPut, "/v1/kv/survivor", token, "still here"); status != http.StatusOK {
		t.Fatalf("kv put: %d %s", status, body)
	}
	addr := a.HTTPAddr()
	if err := a.Restart(t.Context()); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if a.HTTPAddr() != addr {
		t.Fatalf("address changed across Restart: %s -> %s", addr, a.HTTPAddr())
	}
	status, body := do(t, a, http.MethodGet, "/v1/kv/survivor?raw", token, "")
	if status != http.StatusOK || body != "still here" {
		t.Fatalf("kv get after restart: %d %q", status, body)
	}

	if err := a.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if entries, err := os.ReadDir(dataDir); err != nil || len(entries) == 0 {
		t.Fatalf("caller's DataDir should be left alone by Stop: %v, %d entries", err, len(entries))
	}
}

// TestPauseResume: a paused agent keeps its port but answers nothing, so
// requests time out; after Resume it answers again.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	a := ForTest(t, Config{})

	if err := a.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	_, _, err := tryDo(ctx, a, http.MethodGet, "/v1/status/leader", "", "")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request to paused agent: got %v, want a timeout", err)
	}

	if err := a.Resume(); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	status, body, err := tryDo(ctx, a, http.MethodGet, "/v1/status/leader", "", "")
	if err != nil || status != http.StatusOK || body == `""` {
		t.Fatalf("leader after Resume: %d %q %v", status, body, err)
	}
}

// TestStopWhilePaused: Stop must not hang on a SIGSTOPped agent.
func TestStopWhilePaused(t *testing.T) {
	t.Parallel()
	a := ForTest(t, Config{})
	if err := a.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	start := time.Now()
	if err := a.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(start); d > stopGrace {
		t.Fatalf("Stop of a paused agent took %s: SIGTERM was not delivered", d)
	}
}

// TestCrashReported: an agent that dies behind the harness's back makes
// Stop fail with Consul's last words, instead of passing silently.
func TestCrashReported(t *testing.T) {
	t.Parallel()
	a := ForTest(t, Config{})
	if err := syscall.Kill(-a.proc.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.proc.exited
	err := a.Stop()
	if err == nil || !strings.Contains(err.Error(), "exited on its own") || !strings.Contains(err.Error(), "Starting Consul agent") {
		t.Fatalf("Stop after a crash: %v, want an error with the log tail", err)
	}
}

// TestWANFederation: an agent in dc2 that joins dc1 over serf WAN makes both
// datacenters visible from dc1.
func TestWANFederation(t *testing.T) {
	t.Parallel()
	dc1 := ForTest(t, Config{Datacenter: "dc1"})
	dc2 := ForTest(t, Config{Datacenter: "dc2", JoinWAN: []string{dc1.SerfWANAddr()}})

	want := []string{"dc1", "dc2"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		dcs := datacenters(t, dc1)
		if slices.Equal(dcs, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dc1 sees datacenters %v, want %v\n%s", dcs, want, dc2.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// And the federation is usable, not just gossiped: dc1 forwards to dc2.
	if status, body := do(t, dc1, http.MethodGet, "/v1/catalog/nodes?dc=dc2", "", ""); status != http.StatusOK || !strings.Contains(body, dc2.NodeName()) {
		t.Fatalf("dc2 nodes via dc1: %d %s, want %s", status, body, dc2.NodeName())
	}
}

// TestACLDefaultDeny: anonymous writes are refused, the management token
// works, and the agent still became ready (its node registered under the
// agent token).
func TestACLDefaultDeny(t *testing.T) {
	t.Parallel()
	a := ForTest(t, Config{ACLDefaultDeny: true})
	if a.ManagementToken == "" {
		t.Fatal("no ManagementToken")
	}

	if status, body := do(t, a, http.MethodPut, "/v1/kv/locked", "", "x"); status != http.StatusForbidden {
		t.Fatalf("anonymous kv put: %d %s, want 403", status, body)
	}
	if status, body := do(t, a, http.MethodPut, "/v1/kv/locked", a.ManagementToken, "x"); status != http.StatusOK {
		t.Fatalf("kv put with management token: %d %s", status, body)
	}
	status, body := do(t, a, http.MethodGet, "/v1/acl/token/self", a.ManagementToken, "")
	if status != http.StatusOK || !strings.Contains(body, "global-management") {
		t.Fatalf("token self: %d %s, want the global-management policy", status, body)
	}
}
