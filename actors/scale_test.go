package actors_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/messages"
)

const resource = "order-processor"

func TestManyResourcesShareOneSession(t *testing.T) {
	c := startCandidate(t, fastOptions(t, shared, "many"))
	const n = 50
	for i := range n {
		c.campaign(fmt.Sprintf("res-%02d", i))
	}
	sessions := map[string]bool{}
	for range n {
		won := await[messages.LeadershipAcquired](c, 30*time.Second, nil)
		sessions[won.Session] = true
	}
	if len(sessions) != 1 {
		t.Fatalf("%d sessions for %d resources; want 1", len(sessions), n)
	}
	entries, _, err := consulClient(t, shared).ListPrefix(ctxFor(t), c.opts.KeyPrefix+"/", 0, 0)
	if err != nil || len(entries) != n {
		t.Fatalf("%d keys under the prefix (err %v); want %d", len(entries), err, n)
	}
}
