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

// TestAShardedWatchSeesEveryShard campaigns for enough resources that the
// key watch is split into shards: a key deleted in any shard is noticed and
// taken again, and a resource no shard covers brings the whole prefix back
// under watch.
func TestAShardedWatchSeesEveryShard(t *testing.T) {
	const n = 2000
	opts := fastOptions(t, shared, "sharded")
	opts.SessionTTL = 10 * time.Second // 2,000 keys take a while on a loaded machine
	for i := range n {
		opts.Resources = append(opts.Resources, fmt.Sprintf("shard-%04d", i))
	}
	c := startCandidate(t, opts)
	held := map[string]uint64{}
	for len(held) < n {
		won := await[messages.LeadershipAcquired](c, 60*time.Second, nil)
		held[won.Resource] = won.FencingToken
	}
	op := operator(t, shared)
	for _, resource := range []string{"shard-0005", "shard-1999"} { // one in each shard
		if err := op.Delete(ctxFor(t), opts.KeyPrefix+"/"+resource); err != nil {
			t.Fatal(err)
		}
		lost := await(c, 10*time.Second, func(m messages.LeadershipLost) bool { return m.Resource == resource })
		if lost.Reason != messages.ReasonKeyDeleted {
			t.Fatalf("%s lost with %q; want %q", resource, lost.Reason, messages.ReasonKeyDeleted)
		}
		again := await(c, 10*time.Second, func(m messages.LeadershipAcquired) bool { return m.Resource == resource })
		if again.FencingToken <= held[resource] {
			t.Fatalf("%s led again with token %d, not above %d", resource, again.FencingToken, held[resource])
		}
	}
	c.campaign("elsewhere") // under no shard
	await(c, 15*time.Second, func(m messages.LeadershipAcquired) bool { return m.Resource == "elsewhere" })
	if err := op.Delete(ctxFor(t), opts.KeyPrefix+"/elsewhere"); err != nil {
		t.Fatal(err)
	}
	await(c, 10*time.Second, func(m messages.LeadershipLost) bool { return m.Resource == "elsewhere" })
}
