package actors_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/internal/devconsul"
	"github.com/excalibur/consul-elect/messages"
)

// Consul's own failures, against a real cluster: three servers (one raft
// group) and client agents, each candidate talking to its client agent as an
// application does in production.

// clusterTTL is the session TTL of these tests: production-like (Consul's
// own minimum), so that a session must outlive a raft election to keep its
// leader, and so that the self-fence deadline is far from the events tested.
const clusterTTL = 10 * time.Second

// timeline records every candidate's leaderships and renewals, as each
// engine's Observer.
type timeline struct {
	mu     sync.Mutex
	spans  []span
	renews map[string]time.Time // candidate → when its last successful renewal was sent
	errors map[string]int       // candidate → Consul errors seen
}

// span is one leadership: [from, to), to zero while it lasts.
type span struct {
	id       string
	session  string
	token    uint64
	from, to time.Time
	reason   messages.Reason
}

func newTimeline() *timeline {
	return &timeline{renews: map[string]time.Time{}, errors: map[string]int{}}
}

// observer is the Observer of candidate id.
func (tl *timeline) observer(id string) actors.Observer { return &recorder{tl: tl, id: id} }

type recorder struct {
	tl *timeline
	id string
}

func (r *recorder) Event(evt messages.Event) {
	r.tl.mu.Lock()
	defer r.tl.mu.Unlock()
	switch e := evt.(type) {
	case messages.LeadershipAcquired:
		r.tl.spans = append(r.tl.spans, span{id: r.id, session: e.Session, token: e.FencingToken, from: e.At})
	case messages.LeadershipLost:
		for i := range r.tl.spans {
			if s := &r.tl.spans[i]; s.id == r.id && s.token == e.FencingToken && s.to.IsZero() {
				s.to, s.reason = e.At, e.Reason
			}
		}
	}
}

func (r *recorder) Refreshed(sentAt time.Time, took time.Duration, err error) {
	r.tl.mu.Lock()
	defer r.tl.mu.Unlock()
	if err == nil && sentAt.After(r.tl.renews[r.id]) {
		r.tl.renews[r.id] = sentAt
	}
}

func (r *recorder) ConsulError(op string, err error) {
	r.tl.mu.Lock()
	defer r.tl.mu.Unlock()
	r.tl.errors[r.id]++
}

// of returns candidate id's leaderships so far.
func (tl *timeline) of(id string) []span {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var spans []span
	for _, s := range tl.spans {
		if s.id == id {
			spans = append(spans, s)
		}
	}
	return spans
}

// lastRenew is when candidate id's last successful renewal (or session
// creation) was sent.
func (tl *timeline) lastRenew(id string) time.Time {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.renews[id]
}

// overlaps lists every pair of leaderships of different candidates that
// overlapped in time, and every fencing token that did not increase.
func (tl *timeline) overlaps() []string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	spans := slices.Clone(tl.spans)
	slices.SortFunc(spans, func(a, b span) int { return a.from.Compare(b.from) })
	var bad []string
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.id != b.id && (a.to.IsZero() || b.from.Before(a.to)) {
				bad = append(bad, fmt.Sprintf("%s led from %s until %s, %s from %s: %s of two leaders",
					a.id, stamp(a.from), stamp(a.to), b.id, stamp(b.from), overlapOf(a, b)))
			}
			if b.token <= a.token {
				bad = append(bad, fmt.Sprintf("%s's fencing token %d after %s's %d", b.id, b.token, a.id, a.token))
			}
		}
	}
	return bad
}

func overlapOf(a, b span) string {
	if a.to.IsZero() {
		return "still"
	}
	return a.to.Sub(b.from).Round(time.Millisecond).String()
}

// errorCounts returns how many Consul errors each candidate saw.
func (tl *timeline) errorCounts() map[string]int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return maps.Clone(tl.errors)
}

func (tl *timeline) String() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var b strings.Builder
	for _, s := range tl.spans {
		fmt.Fprintf(&b, "\n  %s token %d session %.8s: %s – %s (%s)", s.id, s.token, s.session, stamp(s.from), stamp(s.to), s.reason)
	}
	return b.String()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "now"
	}
	return t.Format("15:04:05.000")
}

// checkOneLeader fails the test if two leaderships overlapped.
func (tl *timeline) checkOneLeader(t *testing.T) {
	t.Helper()
	if bad := tl.overlaps(); len(bad) > 0 {
		t.Errorf("two leaders:\n%s\nleaderships:%s", strings.Join(bad, "\n"), tl)
	}
}

// clusterCandidate starts candidate id on agent, campaigning for resource
// under prefix, recorded in tl.
func clusterCandidate(t *testing.T, agent *devconsul.Agent, id, prefix string, lockDelay time.Duration, tl *timeline) *candidate {
	opts := fastOptions(t, agent, id)
	opts.KeyPrefix = prefix
	opts.SessionTTL = clusterTTL
	opts.LockDelay = lockDelay
	opts.Observer = tl.observer(id)
	c := startCandidate(t, opts)
	c.campaign(resource)
	return c
}

// leaderNow asks every candidate whether it leads and fails the test if two
// do. It returns the one that leads, nil if none does.
func leaderNow(t *testing.T, cands ...*candidate) *candidate {
	t.Helper()
	var leader *candidate
	for _, c := range cands {
		if !c.state(resource).IsLeader {
			continue
		}
		// Asked one after the other, two candidates can both say yes across
		// a handover: only if the first still leads after the second said
		// so did they lead at once.
		if leader != nil && leader.state(resource).IsLeader {
			t.Fatalf("%s and %s both lead", leader.id, c.id)
		}
		leader = c
	}
	return leader
}

// nameOf names a candidate, or nobody.
func nameOf(c *candidate) string {
	if c == nil {
		return "nobody"
	}
	return c.id
}

// until samples the candidates' states every 100ms (failing on two leaders)
// until done returns true, failing the test after timeout.
func until(t *testing.T, timeout time.Duration, what string, cands []*candidate, done func() bool) {
	t.Helper()
	for end := time.Now().Add(timeout); ; {
		leaderNow(t, cands...)
		if done() {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("not %s within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// awaitLeader waits (at most timeout) until one of cands leads.
func awaitLeader(t *testing.T, timeout time.Duration, cands ...*candidate) *candidate {
	t.Helper()
	var leader *candidate
	until(t, timeout, "led", cands, func() bool {
		leader = leaderNow(t, cands...)
		return leader != nil
	})
	return leader
}

// holder returns the session holding resource's key, read through agent.
func holder(t *testing.T, agent *devconsul.Agent, prefix string) string {
	t.Helper()
	entry, ok, err := operator(t, agent).Get(ctxFor(t), prefix+"/"+resource)
	if err != nil {
		t.Fatalf("reading the lock key: %v", err)
	}
	if !ok {
		return ""
	}
	return entry.Session
}

// TestClusterLeaderKeepsLeadershipWhenRaftLeaderIsKilled kills the Consul
// servers' raft leader while a candidate leads. Sessions live in the raft
// state and the new raft leader restarts their TTL timers, so the session
// survives; the candidate must keep leading all along (api.Lock used to drop
// its lock here, hashicorp/consul#1162 and #1290), and the standby must not
// take over.
//
// Observed with Consul 1.14.11 and raft_multiplier = 1: a new raft leader
// within about 3s of the kill. Meanwhile the client agent answers a request
// or two with "rpc error getting client: failed to get conn … connection
// refused" (it still tries the dead server, then rotates to another) or
// "No cluster leader"; the engine reports them as ElectionErrors, retries,
// and renews well within the TTL.
func TestClusterLeaderKeepsLeadershipWhenRaftLeaderIsKilled(t *testing.T) {
	cl := devconsul.ClusterForTest(t, devconsul.ClusterConfig{Servers: 3, Clients: 1})
	raftLeader, err := cl.Leader(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	// The standby talks to a server that survives, so that it could take
	// over at any moment if the key were released.
	follower := cl.Servers[0]
	if follower == raftLeader {
		follower = cl.Servers[1]
	}

	tl := newTimeline()
	prefix := testPrefix(t)
	// Lock-delay as long as the TTL: the fence window (min of the two) then
	// outlasts a raft election, so the leader rides it out.
	alpha := clusterCandidate(t, cl.Clients[0], "alpha", prefix, clusterTTL, tl)
	won := await[messages.LeadershipAcquired](alpha, 15*time.Second, nil)
	beta := clusterCandidate(t, follower, "beta", prefix, clusterTTL, tl)
	await[messages.LeaderChanged](beta, 15*time.Second, func(e messages.LeaderChanged) bool { return e.LeaderID == "alpha" })
	cands := []*candidate{alpha, beta}

	if err := raftLeader.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	next, err := cl.WaitForLeader(ctxFor(t), raftLeader)
	if err != nil {
		t.Fatal(err)
	}
	elected := time.Now()
	t.Logf("killed raft leader %s; %s elected after %s", raftLeader.NodeName(), next.NodeName(), elected.Sub(killed).Round(time.Millisecond))

	// Three TTLs: had renewals stopped working, Consul would have expired
	// the session (it waits up to twice the TTL) and the engine would have
	// self-fenced well before.
	until(t, 3*clusterTTL+time.Second, "3 TTLs later", cands, func() bool {
		if leader := leaderNow(t, cands...); leader != alpha {
			t.Fatalf("alpha does not lead %s after the raft leader was killed (leader: %s)\nleaderships:%s", time.Since(killed).Round(time.Millisecond), nameOf(leader), tl)
		}
		return time.Since(killed) > 3*clusterTTL
	})
	if spans := tl.of("alpha"); len(spans) != 1 || !spans[0].to.IsZero() {
		t.Fatalf("alpha's leadership was interrupted:%s", tl)
	}
	if renewed := tl.lastRenew("alpha"); !renewed.After(elected) {
		t.Fatalf("alpha's last renewal was sent at %s, before the new raft leader was elected at %s", stamp(renewed), stamp(elected))
	}
	if session := holder(t, cl.Clients[0], prefix); session != won.Session {
		t.Fatalf("the key is held by session %q; want alpha's %s", session, won.Session)
	}
	tl.checkOneLeader(t)
	t.Logf("Consul errors seen while the raft leader changed: %v", tl.errorCounts())
}

// TestClusterClientAgentFailures fails the client agent the leader talks to,
// in the ways it fails in production. The standby talks to another client
// agent. What Consul 1.14.11 does, as observed here:
//
//   - Restart (SIGTERM, started again at once): a client agent leaves the
//     cluster on SIGTERM (leave_on_terminate defaults to true for clients).
//     The servers deregister its node as soon as the leave is gossiped, which
//     destroys the node's sessions, about 0.3s into the 3–4s the agent takes
//     to shut down, while it still answers HTTP. The leader's blocking query
//     returns at once with the key released and the session gone, so it
//     steps down ("session invalidated") within milliseconds, before the
//     lock-delay lets the standby in.
//   - A crash with a quick restart (SIGKILL, back within a second): nobody
//     notices. Serf needs a failed probe plus a suspicion timeout (about 5–6s
//     for this 5-node cluster) to declare a node failed; an agent back
//     before that refutes the suspicion, serfHealth never goes critical and
//     the session stays valid. The leader rightly keeps leading: its
//     renewals fail for a moment (connection refused) and are retried.
//   - A crash with the agent down for longer (SIGKILL, back after 15s): serf
//     declares the node failed 5–6s after the kill, serfHealth goes
//     critical, and Consul invalidates the session — long before its TTL.
//     The leader cannot hear of it (its agent is dead); only the lock-delay
//     keeps the standby out meanwhile. This test found that a self-fence
//     deadline of lastRenewSent + SessionTTL − margin let both lead at once
//     (1.7–2.4s with LockDelay 1s; 6.4s with the defaults). The engine's
//     deadline now follows the fence window, min(SessionTTL, LockDelay)
//     (actors.Timing.FenceWindow), so it steps down in time.
func TestClusterClientAgentFailures(t *testing.T) {
	cl := devconsul.ClusterForTest(t, devconsul.ClusterConfig{Servers: 3, Clients: 2})
	agent := cl.Clients[0] // alpha's, the one that fails

	// start runs alpha on the failing agent until it leads, then beta on the
	// other client agent until it follows alpha.
	start := func(t *testing.T, lockDelay time.Duration) (tl *timeline, prefix string, alpha, beta *candidate, won messages.LeadershipAcquired) {
		tl, prefix = newTimeline(), testPrefix(t)
		alpha = clusterCandidate(t, agent, "alpha", prefix, lockDelay, tl)
		won = await[messages.LeadershipAcquired](alpha, 15*time.Second, nil)
		beta = clusterCandidate(t, cl.Clients[1], "beta", prefix, lockDelay, tl)
		await[messages.LeaderChanged](beta, 15*time.Second, func(e messages.LeaderChanged) bool { return e.LeaderID == "alpha" })
		return tl, prefix, alpha, beta, won
	}

	t.Run("graceful restart", func(t *testing.T) {
		tl, prefix, alpha, beta, won := start(t, time.Second)
		cands := []*candidate{alpha, beta}
		restarting := time.Now()
		if err := agent.Restart(ctxFor(t)); err != nil {
			t.Fatal(err)
		}
		lost := await[messages.LeadershipLost](alpha, 15*time.Second, nil)
		if lost.Reason != messages.ReasonSessionInvalidated {
			t.Fatalf("alpha lost leadership with reason %q (%v); want %q", lost.Reason, lost.Err, messages.ReasonSessionInvalidated)
		}
		t.Logf("alpha stepped down %s after the restart began: %s", lost.At.Sub(restarting).Round(time.Millisecond), lost.Reason)

		leader := awaitLeader(t, 30*time.Second, cands...)
		session := holder(t, cl.Servers[0], prefix)
		if session == won.Session || session == "" {
			t.Fatalf("the key is held by session %q; want a new leadership, not alpha's invalidated %s", session, won.Session)
		}
		spans := tl.of(leader.id)
		t.Logf("%s leads again %s after the restart began", leader.id, spans[len(spans)-1].from.Sub(restarting).Round(time.Millisecond))
		tl.checkOneLeader(t)
	})

	t.Run("crash and quick restart", func(t *testing.T) {
		// A fence window of 5s rides out an agent down for 0.2s.
		tl, prefix, alpha, beta, won := start(t, 5*time.Second)
		cands := []*candidate{alpha, beta}
		if err := agent.Kill(); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		if err := agent.Restart(ctxFor(t)); err != nil {
			t.Fatal(err)
		}
		restarted := time.Now()
		t.Logf("alpha's agent was down for %s", restarted.Sub(killed).Round(time.Millisecond))
		// A renewal after the restart proves the session still valid.
		until(t, clusterTTL, "renewed through the restarted agent", cands, func() bool {
			return tl.lastRenew("alpha").After(restarted)
		})
		if leader := leaderNow(t, cands...); leader != alpha {
			t.Fatalf("alpha does not lead after its agent came back at once (leader: %s)\nleaderships:%s", nameOf(leader), tl)
		}
		if spans := tl.of("alpha"); len(spans) != 1 || !spans[0].to.IsZero() {
			t.Fatalf("alpha's leadership was interrupted:%s", tl)
		}
		if session := holder(t, cl.Servers[0], prefix); session != won.Session {
			t.Fatalf("the key is held by session %q; want alpha's %s", session, won.Session)
		}
		tl.checkOneLeader(t)
	})

	t.Run("crash past failure detection", func(t *testing.T) {
		// A short lock-delay: the engine's fence window follows it, so the
		// leader steps down before the standby can get in.
		lockDelay := 2 * time.Second
		tl, _, alpha, beta, _ := start(t, lockDelay)
		cands := []*candidate{alpha, beta}
		// Kill just after a renewal: the leader's deadline is then as late
		// as it gets, the worst case for the standby's lock-delay.
		created := tl.lastRenew("alpha")
		until(t, clusterTTL, "renewed", cands, func() bool { return tl.lastRenew("alpha").After(created) })
		renewed := tl.lastRenew("alpha")
		if err := agent.Kill(); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		restarted := false
		t.Cleanup(func() {
			if !restarted { // let the next test have it
				_ = agent.Restart(context.Background())
			}
		})

		until(t, 30*time.Second, "taken over by beta", cands, func() bool { return leaderNow(t, cands...) == beta })
		lost := tl.of("alpha")[0]
		if lost.to.IsZero() || lost.reason != messages.ReasonRenewDeadline {
			t.Fatalf("alpha's leadership did not end by its renew deadline:%s", tl)
		}
		if limit := renewed.Add(lockDelay); !lost.to.Before(limit) {
			t.Fatalf("alpha stepped down at %s, not before %s (last renewal + the fence window, min(TTL, LockDelay))", stamp(lost.to), stamp(limit))
		}
		acquired := tl.of("beta")[0].from
		t.Logf("alpha self-fenced %s after the kill; beta acquired %s after the kill (Consul invalidated alpha's session about %s after it)",
			lost.to.Sub(killed).Round(time.Millisecond), acquired.Sub(killed).Round(time.Millisecond), acquired.Sub(killed.Add(lockDelay)).Round(100*time.Millisecond))

		// Back up, alpha campaigns on a new session and follows beta.
		if err := agent.Restart(ctxFor(t)); err != nil {
			t.Fatal(err)
		}
		restarted = true
		await[messages.LeaderChanged](alpha, 30*time.Second, func(e messages.LeaderChanged) bool { return e.LeaderID == "beta" })
		if leader := leaderNow(t, cands...); leader != beta {
			t.Fatalf("after alpha's agent came back the leader is %s; want beta", nameOf(leader))
		}
		tl.checkOneLeader(t)
	})
}
