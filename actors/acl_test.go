package actors_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/devconsul"
	"github.com/excalibur/consul-elect/messages"
)

// minimalPolicy is the README's policy for KeyPrefix "acl".
const minimalPolicy = `
key_prefix "acl/" { policy = "write" }
session_prefix "" { policy = "write" }
node_prefix "" { policy = "read" }
agent_prefix "" { policy = "read" }
service_prefix "consul-elect" { policy = "write" }
`

// aclToken creates a token with rules on an ACL-enabled agent.
func aclToken(t *testing.T, agent *devconsul.Agent, rules string) string {
	t.Helper()
	name := fmt.Sprintf("p%d", time.Now().UnixNano())
	call := func(path string, in any, out any) {
		body, _ := json.Marshal(in)
		req, _ := http.NewRequest(http.MethodPut, agent.URL()+path, bytes.NewReader(body))
		req.Header.Set("X-Consul-Token", agent.ManagementToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT %s: %s", path, resp.Status)
		}
		if out != nil {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				t.Fatal(err)
			}
		}
	}
	call("/v1/acl/policy", map[string]any{"Name": name, "Rules": rules}, nil)
	var token struct{ SecretID string }
	call("/v1/acl/token", map[string]any{"Policies": []map[string]string{{"Name": name}}}, &token)
	http.DefaultClient.CloseIdleConnections()
	return token.SecretID
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
