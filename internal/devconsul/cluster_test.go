package devconsul

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// get decodes the JSON answer of a GET to path on a.
func get(t *testing.T, a *Agent, path string, out any) {
	t.Helper()
	status, body := do(t, a, http.MethodGet, path, "", "")
	if err := json.Unmarshal([]byte(body), out); status != http.StatusOK || err != nil {
		t.Fatalf("GET %s on %s: %d %q: %v", path, a.NodeName(), status, body, err)
	}
}

// createSession creates a session through a and returns its ID.
func createSession(t *testing.T, a *Agent) string {
	t.Helper()
	status, body := do(t, a, http.MethodPut, "/v1/session/create", "", `{"TTL":"30s"}`)
	var created struct{ ID string }
	if err := json.Unmarshal([]byte(body), &created); status != http.StatusOK || err != nil || created.ID == "" {
		t.Fatalf("create session on %s: %d %q: %v", a.NodeName(), status, body, err)
	}
	return created.ID
}

// sessionNode returns the node of session id as read through a, "" when the
// session does not exist.
func sessionNode(t *testing.T, a *Agent, id string) string {
	t.Helper()
	var info []struct{ Node string }
	get(t, a, "/v1/session/info/"+id, &info)
	if len(info) == 0 {
		return ""
	}
	return info[0].Node
}

// eventually retries check every 100ms until it returns "", failing the test
// with its last complaint after timeout.
func eventually(t *testing.T, timeout time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		complaint := check()
		if complaint == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, complaint)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCluster: three servers and a client form one datacenter in which every
// agent names the same raft leader; the cluster survives killing that leader
// (a new one is elected, sessions and data survive), and the killed server
// rejoins on Restart.
func TestCluster(t *testing.T) {
	t.Parallel()
	var log bytes.Buffer
	c := ClusterForTest(t, ClusterConfig{Servers: 3, Clients: 1, Log: &log, ExtraHCL: `log_level = "info"`})
	if len(c.Servers) != 3 || len(c.Clients) != 1 || len(c.Agents()) != 4 {
		t.Fatalf("%d servers, %d clients, %d agents; want 3, 1, 4", len(c.Servers), len(c.Clients), len(c.Agents()))
	}
	client := c.Clients[0]
	if client.IsServer() || !c.Servers[0].IsServer() {
		t.Fatal("IsServer is wrong")
	}

	leader, err := c.Leader(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range c.Agents() {
		var named string
		get(t, a, "/v1/status/leader", &named)
		if named != leader.ServerAddr() {
			t.Errorf("%s names raft leader %q; want %s (%s)", a.NodeName(), named, leader.ServerAddr(), leader.NodeName())
		}
	}
	var peers []string
	get(t, client, "/v1/status/peers", &peers)
	if len(peers) != 3 {
		t.Fatalf("raft peers %v; want the 3 servers", peers)
	}
	var nodes []struct{ Node string }
	get(t, client, "/v1/catalog/nodes", &nodes)
	if len(nodes) != 4 {
		t.Fatalf("catalog nodes %v; want all 4 agents", nodes)
	}

	session := createSession(t, client)
	if node := sessionNode(t, leader, session); node != client.NodeName() {
		t.Fatalf("a session created through the client belongs to node %q; want %s", node, client.NodeName())
	}
	if status, body := do(t, client, http.MethodPut, "/v1/kv/survivor", "", "still here"); status != http.StatusOK {
		t.Fatalf("kv put: %d %s", status, body)
	}

	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	next, err := c.WaitForLeader(t.Context(), leader)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s elected %s after %s was killed", next.NodeName(), time.Since(killed).Round(time.Millisecond), leader.NodeName())
	if !next.IsServer() || next == leader {
		t.Fatalf("new leader %s", next.NodeName())
	}
	if _, err := c.Leader(t.Context()); err != nil {
		t.Fatalf("Leader after the election: %v", err)
	}
	// The client's first request may still go to the dead server and fail
	// (it then rotates to another), so the renewal is retried for a while.
	eventually(t, 10*time.Second, func() string {
		if status, body := do(t, client, http.MethodPut, "/v1/session/renew/"+session, "", ""); status != http.StatusOK {
			return fmt.Sprintf("renewing the session after the server leader changed: %d %s", status, body)
		}
		return ""
	})
	if status, body := do(t, client, http.MethodGet, "/v1/kv/survivor?raw", "", ""); status != http.StatusOK || body != "still here" {
		t.Fatalf("kv get after the server leader changed: %d %q", status, body)
	}
	if err := leader.Kill(); err == nil {
		t.Fatal("killing a dead agent succeeded")
	}

	if err := leader.Restart(t.Context()); err != nil {
		t.Fatalf("restarting the killed server: %v", err)
	}
	if _, err := c.WaitForLeader(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	get(t, leader, "/v1/status/peers", &peers)
	if len(peers) != 3 {
		t.Fatalf("raft peers after the restart %v; want the 3 servers", peers)
	}

	addrs := make([]string, 0, 4)
	for _, a := range c.Agents() {
		addrs = append(addrs, a.HTTPAddr())
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, addr := range addrs {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = conn.Close()
			t.Errorf("%s still accepts connections after Stop", addr)
		}
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("cluster dir %s left behind: %v", c.dir, err)
	}
	// Every agent's lines reached the shared log, each with its name.
	for _, a := range c.Agents() {
		if !strings.Contains(log.String(), a.NodeName()+" ") {
			t.Errorf("no line of %s in the log", a.NodeName())
		}
	}
	for line := range strings.Lines(log.String()) {
		if !strings.HasPrefix(line, "devconsul-") {
			t.Fatalf("log line without an agent's name: %q", line)
		}
	}
}

// Serf member states in /v1/agent/members.
const (
	memberAlive  = 1
	memberLeft   = 3
	memberFailed = 4
)

// TestClusterClientShutdownAndKill: a client agent shut down (SIGTERM) leaves
// the cluster, which invalidates its node's sessions at once; a killed one
// stays a member until serf's failure detector finds it failed, which sets
// its serfHealth critical and so invalidates its sessions. Both come back
// with Restart.
func TestClusterClientShutdownAndKill(t *testing.T) {
	t.Parallel()
	c := ClusterForTest(t, ClusterConfig{Servers: 3, Clients: 1})
	server, client := c.Servers[0], c.Clients[0]
	status := func() int {
		var members []struct {
			Name   string
			Status int
		}
		get(t, server, "/v1/agent/members", &members)
		for _, m := range members {
			if m.Name == client.NodeName() {
				return m.Status
			}
		}
		return 0
	}
	becomes := func(want int, timeout time.Duration) {
		t.Helper()
		eventually(t, timeout, func() string {
			if got := status(); got != want {
				return fmt.Sprintf("%s is in serf state %d; want %d", client.NodeName(), got, want)
			}
			return ""
		})
	}

	session := createSession(t, client)
	if err := client.Shutdown(); err != nil {
		t.Fatal(err)
	}
	becomes(memberLeft, 10*time.Second)
	if node := sessionNode(t, server, session); node != "" {
		t.Fatal("the session of a client that left survived")
	}
	if err := client.Shutdown(); err == nil {
		t.Fatal("shutting down a stopped agent succeeded")
	}
	if err := client.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	becomes(memberAlive, 10*time.Second)

	session = createSession(t, client)
	if err := client.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if got := status(); got != memberAlive {
		t.Fatalf("a killed client is in serf state %d at once; it cannot have left", got)
	}
	becomes(memberFailed, 30*time.Second)
	eventually(t, 10*time.Second, func() string {
		if sessionNode(t, server, session) != "" {
			return "the session of a failed client agent survives"
		}
		return ""
	})
	var checks []struct{ CheckID, Status string }
	get(t, server, "/v1/health/node/"+client.NodeName(), &checks)
	if len(checks) != 1 || checks[0].CheckID != "serfHealth" || checks[0].Status != "critical" {
		t.Fatalf("checks of the killed client's node: %+v; want serfHealth critical", checks)
	}
	t.Logf("serf found the killed client failed, and Consul invalidated its session, within %s", time.Since(killed).Round(100*time.Millisecond))
	if err := client.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	becomes(memberAlive, 10*time.Second)
	get(t, server, "/v1/health/node/"+client.NodeName(), &checks)
	if len(checks) != 1 || checks[0].Status != "passing" {
		t.Fatalf("checks of the restarted client's node: %+v; want serfHealth passing", checks)
	}
}

func TestClusterConfigValidation(t *testing.T) {
	t.Parallel()
	if _, err := StartCluster(t.Context(), ClusterConfig{Servers: -1}); err == nil || !strings.Contains(err.Error(), "Servers is -1") {
		t.Fatalf("Servers -1: %v; want an error naming Servers", err)
	}
}
