package consulelect_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/internal/faultproxy"
	"github.com/excalibur/consul-elect/messages"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// ledger records the terms of several candidates for several resources,
// with their fencing tokens.
type ledger struct{ termLog }

// check fails the test if two terms of a resource overlapped, or if a
// resource's fencing tokens did not increase from one term to the next.
func (l *ledger) check(t *testing.T) {
	t.Helper()
	byResource := map[string][]term{}
	for _, tm := range l.snapshot() {
		byResource[tm.resource] = append(byResource[tm.resource], tm)
	}
	for resource, terms := range byResource {
		slices.SortFunc(terms, func(a, b term) int { return a.from.Compare(b.from) })
		for i := 1; i < len(terms); i++ {
			prev, next := terms[i-1], terms[i]
			if prev.to.IsZero() || next.from.Before(prev.to) {
				t.Fatalf("%s: %s's term %+v began before %s's term %+v ended", resource, next.id, next, prev.id, prev)
			}
			if next.token <= prev.token {
				t.Fatalf("%s: fencing token %d of %s after %d of %s; want it greater", resource, next.token, next.id, prev.token, prev.id)
			}
		}
	}
}

// leaderOf is the candidate whose term of resource is open, if any.
func (l *ledger) leaderOf(resource string) string {
	for _, tm := range l.snapshot() {
		if tm.resource == resource && tm.to.IsZero() {
			return tm.id
		}
	}
	return ""
}

// awaitLeader waits until id leads resource.
func (l *ledger) awaitLeader(t *testing.T, resource, id string, bound time.Duration) {
	t.Helper()
	if !l.leads(resource, id, bound) {
		t.Fatalf("%s does not lead %s within %s; terms %+v", id, resource, bound, l.snapshot())
	}
}

// leads reports whether id (anyone, if empty) leads resource within bound.
func (l *ledger) leads(resource, id string, bound time.Duration) bool {
	deadline := time.Now().Add(bound)
	for {
		if leader := l.leaderOf(resource); leader == id || id == "" && leader != "" {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// proxiedCandidate is a candidate whose every request to the agent goes
// through a fault proxy of its own.
type proxiedCandidate struct {
	*consulelect.Election
	proxy *faultproxy.Proxy
}

// startProxied starts candidate id behind a fault proxy, recording its
// terms in l.
func startProxied(t *testing.T, l *ledger, id string, configure ...func(*consulelect.Options)) proxiedCandidate {
	t.Helper()
	proxy, err := faultproxy.Start(agent.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() }) // after the candidate's Stop
	opts := options(t, id)
	opts.ConsulAddress = proxy.URL()
	opts.Observer = recorder{log: &l.termLog, id: id}
	if testing.Verbose() {
		opts.Logger = zaptest.NewLogger(t).With(zap.String("via", proxy.URL()))
	}
	for _, c := range configure {
		c(&opts)
	}
	return proxiedCandidate{Election: start(t, opts), proxy: proxy}
}

// noClusterLeader is the burst of 500s Consul answers while its servers
// elect a leader.
func noClusterLeader(d time.Duration) faultproxy.Fault {
	return faultproxy.Fault{Status: http.StatusInternalServerError, Body: "No cluster leader", For: d}
}

// awaitBurst waits until burst has begun and ended, and fails the test if it
// answered no request: a burst nobody met tests nothing.
func awaitBurst(t *testing.T, what string, burst *faultproxy.Burst, bound time.Duration) {
	t.Helper()
	select {
	case <-burst.Ended():
	case <-time.After(bound):
		t.Fatalf("the burst on %s did not end within %s", what, bound)
	}
	if burst.Answered() == 0 {
		t.Fatalf("the burst on %s answered no request", what)
	}
	t.Logf("the burst on %s answered %d requests, from %s", what, burst.Answered(), burst.Trigger())
}

// sessionOf is the session of candidate id for resource as e sees the
// registry.
func sessionOf(t *testing.T, e *consulelect.Election, resource, id string) string {
	t.Helper()
	cs, err := e.Candidates(context.Background(), resource)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(cs, func(c messages.Candidate) bool { return c.ID == id }); i >= 0 {
		return cs[i].Session
	}
	return ""
}

func awaitCandidates(t *testing.T, e *consulelect.Election, resource string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cs, err := e.Candidates(context.Background(), resource)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("candidates %+v; want %d", cs, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSwitchoverThroughBurstsOf500s: a switchover whose target's requests
// fail with 500s for a while, then one whose leader's do. The leader stops
// with a switchover each time; the target leads, or, if its requests failed
// past the time the others leave the key to it, Switchover says who took
// over instead, or, if they failed past its renew deadline after the key was
// handed to its session, that session's end frees the key for another.
// Never two leaders at once, and the tokens increase.
func TestSwitchoverThroughBurstsOf500s(t *testing.T) {
	l := &ledger{}
	byID := map[string]proxiedCandidate{}
	for _, id := range []string{"a", "b", "c"} {
		byID[id] = startProxied(t, l, id)
		if err := byID[id].Campaign("jobs", nil); err != nil {
			t.Fatal(err)
		}
		if id == "a" {
			l.awaitLeader(t, "jobs", "a", 15*time.Second)
		}
	}
	for _, e := range byID {
		awaitCandidates(t, e.Election, "jobs", 3)
	}

	// switchover asks asker to hand jobs over to target while faulty's
	// requests fail for 1.5s from the moment it is asked.
	switchover := func(asker, target, faulty string) {
		t.Helper()
		// Settled after the last burst: every candidate has renewed its
		// session and watches again. A leader whose watch is not in flight
		// when its burst begins cannot see the request, and steps down at
		// its renew deadline instead.
		time.Sleep(time.Second)
		leader := l.leaderOf("jobs")
		terms := len(l.snapshot())
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		session := sessionOf(t, byID[asker].Election, "jobs", target)
		burst := byID[faulty].proxy.Arm(noClusterLeader(1500 * time.Millisecond))
		err := byID[asker].Switchover(ctx, "jobs", target)
		awaitBurst(t, faulty, burst, 10*time.Second)
		// Switchover tells from the asker's view of the key; the new
		// leader's own LeadershipAcquired may follow a moment later.
		switch {
		case err == nil && l.leads("jobs", target, 5*time.Second):
			t.Logf("%s took over from %s through the burst on %s", target, leader, faulty)
		case err == nil:
			if now := sessionOf(t, byID[asker].Election, "jobs", target); now == session {
				t.Fatalf("%s does not lead jobs within 5s, though the key went to its session %s, which it still has; terms %+v", target, session, l.snapshot())
			}
			l.awaitLeader(t, "jobs", "", 5*time.Second)
			t.Logf("the key went to %s's session, which ended in the burst on %s before it led; %s leads", target, faulty, l.leaderOf("jobs"))
		default:
			var instead string // the third candidate
			for id := range byID {
				if id != leader && id != target {
					instead = id
				}
			}
			want := fmt.Sprintf("consul-elect: switchover of jobs: %s took over instead of %s", instead, target)
			if err.Error() != want {
				t.Fatalf("switchover of %s to %s, with %s's requests failing: %v; want success or %q", leader, target, faulty, err, want)
			}
			l.awaitLeader(t, "jobs", instead, 5*time.Second)
			t.Logf("the burst on %s kept %s from taking over: %v", faulty, target, err)
		}
		if ended := l.snapshot()[terms-1]; ended.id != leader || ended.reason != messages.ReasonSwitchover {
			t.Fatalf("the term before the switchover %+v; want %s's, ended with a switchover", ended, leader)
		}
	}
	switchover("c", "b", "b") // the target's requests fail
	leader := l.leaderOf("jobs")
	target := map[string]string{"a": "b", "b": "c", "c": "a"}[leader]
	switchover(target, target, leader) // the leader's requests fail
	l.check(t)
}

// TestPreemptionThroughABurstOf500s: a candidate of higher priority joins a
// leader with Preempt; the leader's HTTP fails for a while around the moment
// it hands over. The higher priority ends up leading, once, without two
// leaders at once.
func TestPreemptionThroughABurstOf500s(t *testing.T) {
	l := &ledger{}
	preempt := func(o *consulelect.Options) { o.Preempt = true }
	low := startProxied(t, l, "low", preempt, func(o *consulelect.Options) { o.Priority = 1 })
	if err := low.Campaign("jobs", nil); err != nil {
		t.Fatal(err)
	}
	l.awaitLeader(t, "jobs", "low", 15*time.Second)
	high := startProxied(t, l, "high", preempt, func(o *consulelect.Options) { o.Priority = 9 })
	joined := time.Now()
	// From shortly before the leader may hand over, its next request
	// begins a burst of 500s.
	handoverDue := joined.Add(actors.PreemptAfter - 500*time.Millisecond)
	f := noClusterLeader(1500 * time.Millisecond)
	f.When = func(*http.Request) bool { return time.Now().After(handoverDue) }
	burst := low.proxy.Arm(f)
	if err := high.Campaign("jobs", nil); err != nil {
		t.Fatal(err)
	}
	l.awaitLeader(t, "jobs", "high", actors.PreemptAfter+20*time.Second)
	awaitBurst(t, "the preempted leader", burst, 10*time.Second)
	t.Logf("high leads %s after joining", time.Since(joined).Round(time.Millisecond))

	time.Sleep(actors.PreemptAfter + time.Second)
	terms := l.snapshot()
	if last := terms[len(terms)-1]; last.id != "high" || !last.to.IsZero() || terms[len(terms)-2].id != "low" {
		t.Fatalf("terms %+v; want low's, then one of high's that lasts", terms)
	}
	t.Logf("low's last term ended with %q", terms[len(terms)-2].reason)
	l.check(t)
}

// TestBalanceConvergesWhileOneCandidateSeesBurstsOf500sAnd429s: three
// candidates with Balance share twelve resources while one of them meets
// bursts of 500s and 429s as it joins: every resource is led again, no two
// terms of a resource overlap, tokens increase, and the shares converge.
func TestBalanceConvergesWhileOneCandidateSeesBurstsOf500sAnd429s(t *testing.T) {
	const k = 12
	var resources []string
	for i := range k {
		resources = append(resources, fmt.Sprintf("shard-%02d", i))
	}
	l := &ledger{}
	balanced := func(o *consulelect.Options) { o.Balance, o.Resources = true, resources }
	byID := map[string]*consulelect.Election{}
	counts := func() (map[string]int, int) {
		n, total := map[string]int{}, 0
		for _, r := range resources {
			if id := l.leaderOf(r); id != "" {
				n[id]++
				total++
			}
		}
		return n, total
	}
	awaitFair := func(bound time.Duration, ids ...string) {
		t.Helper()
		share := (k + len(ids) - 1) / len(ids)
		deadline := time.Now().Add(bound)
		for {
			n, total := counts()
			fair := total == k
			for _, id := range ids {
				fair = fair && n[id] <= share+actors.BalanceSlack
			}
			if fair {
				t.Logf("leaderships %v", n)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("leaderships %v; want each of %v at most %d, all %d held", n, ids, share+actors.BalanceSlack, k)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, id := range []string{"a", "b"} {
		byID[id] = startProxied(t, l, id, balanced).Election
	}
	awaitFair(15*time.Second, "a", "b")

	c := startProxied(t, l, "c", balanced)
	byID["c"] = c.Election
	// Bursts on c's HTTP, one after another, while the others hand it its
	// share: 500s, then 429s, each for 800ms, with 700ms between.
	flaky, stopFlaky := context.WithCancel(context.Background())
	bursts := make(chan *faultproxy.Burst, 100)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(bursts)
		for i := 0; flaky.Err() == nil; i++ {
			f := noClusterLeader(800 * time.Millisecond)
			if i%2 == 1 {
				f = faultproxy.Fault{Status: http.StatusTooManyRequests, For: 800 * time.Millisecond}
			}
			b := c.proxy.Arm(f)
			bursts <- b
			select {
			case <-b.Ended():
			case <-flaky.Done():
				return
			}
			select {
			case <-time.After(700 * time.Millisecond):
			case <-flaky.Done():
			}
		}
	})
	time.Sleep(10 * time.Second)
	stopFlaky()
	wg.Wait()
	answered := 0
	for b := range bursts {
		answered += b.Answered()
	}
	if answered == 0 {
		t.Fatal("the bursts on c answered no request")
	}
	t.Logf("the bursts on c answered %d requests", answered)
	awaitFair(20*time.Second, "a", "b", "c")
	if n, _ := counts(); n["c"] == 0 {
		t.Fatalf("leaderships %v; want c to have its share", n)
	}
	l.check(t)
}
