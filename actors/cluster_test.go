package actors_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
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

func (r *recorder) Event(evt any) {
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

// sampleLeaders asks every candidate for its state every 100ms for d and
// fails if two say they lead at once. It returns the leader of the last
// sample (nil: none).
func sampleLeaders(t *testing.T, d time.Duration, cands ...*candidate) *candidate {
	t.Helper()
	var leader *candidate
	for end := time.Now().Add(d); ; {
		leader = nil
		for _, c := range cands {
			if !c.state(resource).IsLeader {
				continue
			}
			// Asked one after the other, two candidates can both say yes
			// across a handover: only if the first still leads after the
			// second said so did they lead at once.
			if leader != nil && leader.state(resource).IsLeader {
				t.Fatalf("%s and %s both lead", leader.id, c.id)
			}
			leader = c
		}
		if !time.Now().Before(end) {
			return leader
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// awaitLeader waits (at most timeout) until one of cands leads.
func awaitLeader(t *testing.T, timeout time.Duration, cands ...*candidate) *candidate {
	t.Helper()
	for end := time.Now().Add(timeout); time.Now().Before(end); {
		if leader := sampleLeaders(t, 0, cands...); leader != nil {
			return leader
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no leader within %s", timeout)
	return nil
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

var _ = errors.Is
var _ = consul.ErrSessionGone
var _ context.Context
