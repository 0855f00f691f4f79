//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/internal/devconsul"
)

func TestDeniedTokensEndRunAtStartUp(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{ACLDefaultDeny: true})
	run := func(tokenFile string) (int, string) {
		code, _, stderr := consulElect(t, "", "run", "--address", agent.URL(), "--resource", "r",
			"--token-file", tokenFile, "--ttl", "4s", "--kill-grace", "300ms", "--log-level", "error", "--", "true")
		return code, stderr
	}

	unknown := writeToken(t, "00000000-0000-4000-8000-000000000000")
	if code, stderr := run(unknown); code != exitRuntime || !strings.Contains(stderr, "denied the ACL token") {
		t.Fatalf("an unknown token: exit %d, stderr %q; want 1 and a line saying the token was denied", code, stderr)
	}

	// A token that may read but not create a session passes the first
	// contact; the engine's first attempt at a session tells.
	readOnly := writeToken(t, createToken(t, agent, `agent_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }
key_prefix "" { policy = "read" }`))
	code, stderr := run(readOnly)
	lines := strings.Split(strings.TrimSpace(stderr), "\n") // the engine's error log, then ours
	last := lines[len(lines)-1]
	if code != exitRuntime || !strings.HasPrefix(last, "consul-elect run: cannot campaign") || !strings.Contains(last, "session:write") {
		t.Fatalf("a read-only token: exit %d, stderr %q; want 1 and a last line saying the token may not create a session", code, stderr)
	}
}

func writeToken(t *testing.T, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// createToken creates an ACL token with rules and returns its secret.
func createToken(t *testing.T, agent *devconsul.Agent, rules string) string {
	t.Helper()
	var policy struct{ ID string }
	aclCall(t, agent, "/v1/acl/policy", map[string]any{"Name": "read-only", "Rules": rules}, &policy)
	var token struct{ SecretID string }
	aclCall(t, agent, "/v1/acl/token", map[string]any{"Policies": []map[string]string{{"ID": policy.ID}}}, &token)
	return token.SecretID
}

func aclCall(t *testing.T, agent *devconsul.Agent, path string, in, out any) {
	t.Helper()
	body, _ := json.Marshal(in)
	req, err := http.NewRequest(http.MethodPut, agent.URL()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Consul-Token", agent.ManagementToken)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("PUT %s: %s: %s", path, resp.Status, msg)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// minimalPolicy is the README's policy for the default --prefix.
const minimalPolicy = `
key_prefix "excalibur/leader-election/" { policy = "write" }
key_prefix "excalibur/leader-election-candidates/" { policy = "write" }
session_prefix "" { policy = "write" }
node_prefix "" { policy = "read" }
agent_prefix "" { policy = "read" }
service_prefix "consul-elect" { policy = "write" }
`

func TestRunOutlivesAPolicyDetachedWhileLeadingAndLeadsAgainWhenItIsBack(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{ACLDefaultDeny: true})
	var policy struct{ ID string }
	aclCall(t, agent, "/v1/acl/policy", map[string]any{"Name": "minimal", "Rules": minimalPolicy}, &policy)
	var acl struct{ AccessorID, SecretID string }
	aclCall(t, agent, "/v1/acl/token", map[string]any{"Policies": []map[string]string{{"ID": policy.ID}}}, &acl)
	setPolicies := func(policies []map[string]string) {
		var ignored map[string]any
		aclCall(t, agent, "/v1/acl/token/"+acl.AccessorID, map[string]any{"Policies": policies}, &ignored)
	}
	dir := t.TempDir()
	p := runCandidate(t, agent, dir, "a", "--token-file", writeToken(t, acl.SecretID))
	first := firstLeader(t, dir)

	setPolicies([]map[string]string{})
	// Renewals are denied: the command is stopped before the session's TTL
	// (4s) could run out.
	waitFor(t, 10*time.Second, "the command to be stopped", func() bool { return len(events(t, dir, "term")) > 0 })
	time.Sleep(8 * time.Second) // denied long enough for every retry to back off to its cap
	select {
	case <-p.done:
		t.Fatalf("consul-elect run exited with %d while its token was denied; want it to wait for its rights", p.code)
	default:
	}

	setPolicies([]map[string]string{{"ID": policy.ID}})
	restored := time.Now()
	// The engine's longest retry backoff cap (10s), the old session's
	// invalidation (2·TTL) and the lock-delay (1s) bound the return.
	waitFor(t, 30*time.Second, "the command to start again", func() bool { return len(startedBy(t, dir, "a")) > 1 })
	again := startedBy(t, dir, "a")[1]
	if token(t, again) <= token(t, first) || again.Session == first.Session {
		t.Fatalf("the command started again with session %s, fencing token %s, after %s, %s: want a new session and a greater token",
			again.Session, again.FencingToken, first.Session, first.FencingToken)
	}
	t.Logf("the command started again %s after the policy was restored", time.Since(restored).Round(time.Millisecond))
	noOverlap(t, dir)
}
