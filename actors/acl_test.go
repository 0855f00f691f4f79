package actors_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/devconsul"
	"github.com/excalibur/consul-elect/messages"
)

// minimalPolicy is the README's policy for KeyPrefix "acl".
const minimalPolicy = `
key_prefix "acl/" { policy = "write" }
key_prefix "acl-candidates/" { policy = "write" }
session_prefix "" { policy = "write" }
node_prefix "" { policy = "read" }
agent_prefix "" { policy = "read" }
service_prefix "consul-elect" { policy = "write" }
`

// aclToken creates a token with rules on an ACL-enabled agent and returns its
// secret.
func aclToken(t *testing.T, agent *devconsul.Agent, rules string) string {
	secret, _ := aclTokenIDs(t, agent, rules)
	return secret
}

// aclCall sends a management request to an ACL-enabled agent.
func aclCall(t *testing.T, agent *devconsul.Agent, method, path string, in, out any) {
	t.Helper()
	body, _ := json.Marshal(in)
	req, _ := http.NewRequest(method, agent.URL()+path, bytes.NewReader(body))
	req.Header.Set("X-Consul-Token", agent.ManagementToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

// aclTokenIDs creates a token with rules; it returns its secret and accessor.
func aclTokenIDs(t *testing.T, agent *devconsul.Agent, rules string) (secret, accessor string) {
	t.Helper()
	name := fmt.Sprintf("p%d", time.Now().UnixNano())
	aclCall(t, agent, http.MethodPut, "/v1/acl/policy", map[string]any{"Name": name, "Rules": rules}, nil)
	var token struct{ SecretID, AccessorID string }
	aclCall(t, agent, http.MethodPut, "/v1/acl/token", map[string]any{"Policies": []map[string]string{{"Name": name}}}, &token)
	return token.SecretID, token.AccessorID
}

func TestACLMinimalPolicyWorksAndMissingRightsAreNamed(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{ACLDefaultDeny: true})

	opts := fastOptions(t, agent, "minimal")
	opts.KeyPrefix = "acl"
	opts.FastFailover = true
	opts.Token = aclToken(t, agent, minimalPolicy)
	c := startCandidate(t, opts)
	c.campaign(resource)
	await[messages.LeadershipAcquired](c, 15*time.Second, nil)

	opts.CandidateID = "no-sessions"
	opts.FastFailover = false
	opts.Token = aclToken(t, agent, `key_prefix "acl/" { policy = "write" }
agent_prefix "" { policy = "read" }`)
	denied := startCandidate(t, opts)
	failed := await[messages.ElectionError](denied, 15*time.Second, nil)
	if !errors.Is(failed.Err, consul.ErrPermissionDenied) || !strings.Contains(failed.Err.Error(), "session") {
		t.Fatalf("error %v; want permission denied naming the session right", failed.Err)
	}
	t.Logf("without session rights: %v", failed.Err)
}

// countingTransport counts the requests that reach the agent.
type countingTransport struct {
	next     http.RoundTripper
	requests atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.requests.Add(1)
	return c.next.RoundTrip(r)
}

func TestRevokedTokenLosesLeadershipAndRetriesAtABoundedRate(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{ACLDefaultDeny: true})
	secret, accessor := aclTokenIDs(t, agent, minimalPolicy)
	counter := &countingTransport{}
	client, err := consul.NewClient(consul.Config{Address: agent.URL(), Token: secret,
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	opts := fastOptions(t, agent, "revoked")
	opts.KeyPrefix, opts.Backend = "acl", client
	c := startCandidate(t, opts)
	c.campaign(resource)
	await[messages.LeadershipAcquired](c, 15*time.Second, nil)

	aclCall(t, agent, http.MethodDelete, "/v1/acl/token/"+accessor, nil, nil)
	lost := await[messages.LeadershipLost](c, 2*opts.SessionTTL, nil)
	if lost.Reason != messages.ReasonPermissionDenied || !errors.Is(lost.Err, consul.ErrPermissionDenied) {
		t.Fatalf("lost %q (%v); want permission denied", lost.Reason, lost.Err)
	}
	// Let the backoff reach its cap, then measure what a denied candidate costs.
	time.Sleep(8 * time.Second)
	before, since := counter.requests.Load(), time.Now()
	time.Sleep(10 * time.Second)
	rate := float64(counter.requests.Load()-before) / time.Since(since).Seconds()
	t.Logf("requests while denied: %.2f/s", rate)
	if rate > 2 {
		t.Fatalf("%.2f requests/s while denied; retries must back off", rate)
	}
}
