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
