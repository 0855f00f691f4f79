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

	"github.com/excalibur/consul-elect/actors"
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

// aclTokenPolicies returns the policy links of the token with accessor.
func aclTokenPolicies(t *testing.T, agent *devconsul.Agent, accessor string) []map[string]string {
	t.Helper()
	var token struct{ Policies []map[string]string }
	aclCall(t, agent, http.MethodGet, "/v1/acl/token/"+accessor, nil, &token)
	return token.Policies
}

// aclSetPolicies replaces the policies of the token with accessor; the token
// itself, and so its secret, stays.
func aclSetPolicies(t *testing.T, agent *devconsul.Agent, accessor string, policies []map[string]string) {
	t.Helper()
	if policies == nil {
		policies = []map[string]string{}
	}
	aclCall(t, agent, http.MethodPut, "/v1/acl/token/"+accessor, map[string]any{"Policies": policies}, nil)
}

// recoveryBound is how soon after its rights come back a denied candidate
// leads again: the engine's longest retry backoff cap (the supervisor's 10 s
// restart cap; the actors' own retries cap at 5 s), then the old session's
// invalidation (at most 2·SessionTTL) and the acquisition itself.
func recoveryBound(opts actors.Options) time.Duration {
	return 10*time.Second + 2*opts.SessionTTL + 5*time.Second
}

func TestPolicyDetachedWhileLeadingLosesLeadershipAndRestoredLeadsAgain(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{ACLDefaultDeny: true})
	secret, accessor := aclTokenIDs(t, agent, minimalPolicy)
	policies := aclTokenPolicies(t, agent, accessor)
	opts := fastOptions(t, agent, "detached")
	opts.KeyPrefix, opts.Token = "acl", secret
	c := startCandidate(t, opts)
	c.campaign(resource)
	first := await[messages.LeadershipAcquired](c, 15*time.Second, nil)

	aclSetPolicies(t, agent, accessor, nil)
	lost := await[messages.LeadershipLost](c, 2*opts.SessionTTL, nil)
	if lost.Reason != messages.ReasonPermissionDenied || !errors.Is(lost.Err, consul.ErrPermissionDenied) {
		t.Fatalf("lost %q (%v); want permission denied", lost.Reason, lost.Err)
	}
	// Stay denied long enough for every retry to back off to its cap.
	none[messages.LeadershipAcquired](c, 8*time.Second, nil)

	aclSetPolicies(t, agent, accessor, policies)
	restored := time.Now()
	again := await[messages.LeadershipAcquired](c, recoveryBound(opts), nil)
	took := time.Since(restored)
	if again.FencingToken <= first.FencingToken {
		t.Fatalf("led again with token %d; want a new term after token %d", again.FencingToken, first.FencingToken)
	}
	// And it keeps leading: no watch begun while denied deposes it.
	none[messages.LeadershipLost](c, 2*time.Second, nil)
	if st := c.state(resource); !st.IsLeader {
		t.Fatalf("state %+v after leading again; want leader", st)
	}
	t.Logf("led again %s after the policy was restored (bound %s)", took.Round(time.Millisecond), recoveryBound(opts))
}
