package consulelect_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/messages"
)

// fleet is a few candidates for one resource in one test, with a record of
// every term, to check that none overlap.
type fleet struct {
	termLog
	t        *testing.T
	resource string
	byID     map[string]*consulelect.Election
}

// termLog records the terms of candidates, with their fencing tokens, from
// the engine's own LeadershipAcquired and LeadershipLost.
type termLog struct {
	mu    sync.Mutex
	terms []term
	wake  chan struct{} // nil, or told after each event
}

type term struct {
	id, resource string
	token        uint64
	from, to     time.Time
	reason       messages.Reason
}

func (l *termLog) snapshot() []term {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.terms)
}

// recorder is an Observer that records one candidate's terms.
type recorder struct {
	log *termLog
	id  string
}

func (r recorder) Event(evt messages.Event) {
	r.log.mu.Lock()
	switch m := evt.(type) {
	case messages.LeadershipAcquired:
		r.log.terms = append(r.log.terms, term{id: r.id, resource: m.Resource, token: m.FencingToken, from: m.At})
	case messages.LeadershipLost:
		for i := range r.log.terms {
			if t := &r.log.terms[i]; t.id == r.id && t.resource == m.Resource && t.to.IsZero() {
				t.to, t.reason = m.At, m.Reason
			}
		}
	}
	r.log.mu.Unlock()
	select {
	case r.log.wake <- struct{}{}:
	default:
	}
}
func (recorder) Refreshed(time.Time, time.Duration, error) {}
func (recorder) ConsulError(string, error)                 {}

func newFleet(t *testing.T, resource string) *fleet {
	return &fleet{termLog: termLog{wake: make(chan struct{}, 1)}, t: t, resource: resource, byID: map[string]*consulelect.Election{}}
}

// join starts candidate id with priority and has it campaign.
func (f *fleet) join(id string, priority int, configure ...func(*consulelect.Options)) *consulelect.Election {
	f.t.Helper()
	opts := options(f.t, id)
	opts.Priority = priority
	opts.Observer = recorder{log: &f.termLog, id: id}
	for _, c := range configure {
		c(&opts)
	}
	e := start(f.t, opts)
	f.byID[id] = e
	if err := e.Campaign(f.resource, nil); err != nil {
		f.t.Fatal(err)
	}
	return e
}

// leader waits until one candidate leads and returns its id.
func (f *fleet) leader(timeout time.Duration) string {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f.mu.Lock()
		for _, t := range f.terms {
			if t.to.IsZero() {
				f.mu.Unlock()
				return t.id
			}
		}
		f.mu.Unlock()
		if time.Now().After(deadline) {
			f.t.Fatalf("nobody leads %s within %s", f.resource, timeout)
		}
		select {
		case <-f.wake:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// awaitLeader waits until id leads.
func (f *fleet) awaitLeader(id string, timeout time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if leader := f.leader(timeout); leader == id {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s does not lead %s within %s (terms %v)", id, f.resource, timeout, f.snapshot())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// awaitCandidates waits until e sees exactly ids as live candidates.
func (f *fleet) awaitCandidates(e *consulelect.Election, ids ...string) []messages.Candidate {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cs, err := e.Candidates(context.Background(), f.resource)
		if err != nil {
			f.t.Fatal(err)
		}
		var got []string
		for _, c := range cs {
			got = append(got, c.ID)
		}
		if slices.Equal(got, ids) {
			return cs
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("candidates %v; want %v", got, ids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// noOverlap fails if two terms of one resource overlapped.
func (f *fleet) noOverlap() {
	f.t.Helper()
	terms := f.snapshot()
	for i, a := range terms {
		for _, b := range terms[i+1:] {
			if a.resource != b.resource {
				continue
			}
			aEnd, bEnd := a.to, b.to
			if aEnd.IsZero() {
				aEnd = time.Now()
			}
			if bEnd.IsZero() {
				bEnd = time.Now()
			}
			if a.from.Before(bEnd) && b.from.Before(aEnd) {
				f.t.Fatalf("terms overlap: %+v and %+v", a, b)
			}
		}
	}
}

func TestCandidateRegistryListsEveryLiveCandidate(t *testing.T) {
	f := newFleet(t, "jobs")
	a := f.join("a", 0)
	f.leader(15 * time.Second)
	b := f.join("b", 10)
	f.join("c", 5)
	cs := f.awaitCandidates(a, "b", "c", "a") // highest priority first
	if cs[0].Priority != 10 || !cs[0].Healthy || cs[0].Node == "" || cs[0].Started.IsZero() || !slices.Contains(cs[0].Resources, "jobs") {
		t.Fatalf("b's entry: %+v", cs[0])
	}
	if err := b.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.awaitCandidates(a, "c", "a")
	if err := a.SetHealthy(false, "disk full"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cs, _ := a.Candidates(context.Background(), "jobs")
		if i := slices.IndexFunc(cs, func(c messages.Candidate) bool { return c.ID == "a" }); i >= 0 && !cs[i].Healthy && cs[i].Reason == "disk full" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a's unhealthiness is not in the registry: %+v", cs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSwitchoverHandsOverToTheTargetWithoutOverlap(t *testing.T) {
	f := newFleet(t, "jobs")
	a := f.join("a", 0)
	f.awaitLeader("a", 15*time.Second)
	b := f.join("b", 0)
	f.join("c", 7)
	f.awaitCandidates(a, "c", "a", "b")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// From a follower, to a follower of lower priority.
	if err := b.Switchover(ctx, "jobs", "b"); err != nil {
		t.Fatal(err)
	}
	f.awaitLeader("b", time.Second)
	if terms := f.snapshot(); terms[0].reason != messages.ReasonSwitchover {
		t.Fatalf("a's term ended with %q; want switchover", terms[0].reason)
	}
	// A target that is not a candidate is refused, and nothing moves.
	if err := a.Switchover(ctx, "jobs", "nosuch"); !errors.Is(err, messages.ErrNoCandidate) {
		t.Fatalf("switchover to nosuch = %v; want ErrNoCandidate", err)
	}
	time.Sleep(300 * time.Millisecond)
	f.awaitLeader("b", time.Second)
	// Without a target: the healthy one of highest priority.
	if err := a.Switchover(ctx, "jobs", ""); err != nil {
		t.Fatal(err)
	}
	f.awaitLeader("c", time.Second)
	f.noOverlap()
	if n := len(f.snapshot()); n != 3 {
		t.Fatalf("%d terms; want 3 (a, b, c)", n)
	}
}

// TestTheHighestPrioritySurvivorTakesOver stops the leader again and again:
// each time the survivor of highest priority leads, not whoever is fastest.
func TestTheHighestPrioritySurvivorTakesOver(t *testing.T) {
	f := newFleet(t, "jobs")
	f.join("p1", 1)
	f.awaitLeader("p1", 15*time.Second)
	for _, id := range []string{"p2", "p3", "p4"} {
		f.join(id, int(id[1]-'0'))
	}
	for _, e := range f.byID { // priorities work once everyone knows the others
		f.awaitCandidates(e, "p4", "p3", "p2", "p1")
	}
	for _, next := range []string{"p4", "p3", "p2"} {
		leader := f.leader(5 * time.Second)
		if err := f.byID[leader].Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		f.awaitLeader(next, 10*time.Second)
	}
	f.noOverlap()
}

func TestAnUnhealthyCandidateNeverLeadsAndAnUnhealthyLeaderStepsDown(t *testing.T) {
	f := newFleet(t, "jobs")
	a := f.join("a", 0)
	f.awaitLeader("a", 15*time.Second)
	b := f.join("b", 0)
	f.awaitCandidates(a, "a", "b")
	if err := b.SetHealthy(false, "warming up"); err != nil {
		t.Fatal(err)
	}
	if err := a.SetHealthy(false, "disk full"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		terms := f.snapshot()
		if last := terms[len(terms)-1]; last.id == "a" && last.reason == messages.ReasonUnhealthy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a did not step down as unhealthy: %+v", terms)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if terms := f.snapshot(); len(terms) != 1 {
		t.Fatalf("an unhealthy candidate led: %+v", terms)
	}
	if err := b.SetHealthy(true, ""); err != nil {
		t.Fatal(err)
	}
	f.awaitLeader("b", 10*time.Second)
	f.noOverlap()
}

// TestPreemptReturnsLeadershipToTheHigherPriorityOnce: a leader with Preempt
// hands over to a candidate of higher priority that appears, after
// PreemptAfter, and leadership does not come back.
func TestPreemptReturnsLeadershipToTheHigherPriorityOnce(t *testing.T) {
	f := newFleet(t, "jobs")
	preempt := func(o *consulelect.Options) { o.Preempt = true }
	f.join("low", 1, preempt)
	f.awaitLeader("low", 15*time.Second)
	joined := time.Now()
	f.join("high", 9, preempt)
	f.awaitLeader("high", actors.PreemptAfter+10*time.Second)
	terms := f.snapshot()
	if terms[0].reason != messages.ReasonSwitchover || terms[0].to.Sub(terms[0].from) < actors.PreemptAfter {
		t.Fatalf("low's term %+v; want a switchover after at least %s", terms[0], actors.PreemptAfter)
	}
	if time.Since(joined) > actors.PreemptAfter+10*time.Second {
		t.Fatal("the handover took too long")
	}
	time.Sleep(actors.PreemptAfter + time.Second)
	if terms := f.snapshot(); len(terms) != 2 {
		t.Fatalf("leadership moved again: %+v", terms)
	}
	f.noOverlap()
}

// instances reads the passing instances of service name from the agent:
// candidate id → tags.
func instances(t *testing.T, name, tag string) map[string][]string {
	t.Helper()
	url := agent.URL() + "/v1/health/service/" + name + "?passing"
	if tag != "" {
		url += "&tag=" + tag
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var entries []struct {
		Service struct {
			Tags []string
			Meta map[string]string
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, e := range entries {
		got[e.Service.Meta["candidate_id"]] = e.Service.Tags
	}
	return got
}

// awaitInstances waits until the service's leader-tagged passing instances
// are exactly leaders, and all passing ones exactly all.
func awaitInstances(t *testing.T, name string, leaders, all []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, a := slices.Sorted(maps.Keys(instances(t, name, "leader"))), slices.Sorted(maps.Keys(instances(t, name, "")))
		if slices.Equal(l, leaders) && slices.Equal(a, all) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("instances of %s: leader-tagged %v, passing %v; want %v and %v", name, l, a, leaders, all)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServiceTagsExactlyTheLeader(t *testing.T) {
	f := newFleet(t, "jobs")
	name := "route-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	service := func(port int) func(*consulelect.Options) {
		return func(o *consulelect.Options) { o.Service = actors.ServiceOptions{Name: name, Port: port} }
	}
	a := f.join("a", 0, service(8001))
	f.awaitLeader("a", 15*time.Second)
	b := f.join("b", 0, service(8002))
	awaitInstances(t, name, []string{"a"}, []string{"a", "b"})
	if err := a.Resign("jobs", time.Minute); err != nil {
		t.Fatal(err)
	}
	f.awaitLeader("b", 10*time.Second)
	awaitInstances(t, name, []string{"b"}, []string{"a", "b"})
	if err := b.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	awaitInstances(t, name, nil, []string{"a"})
}

// TestBalanceSharesResourcesFairly: candidates with Balance that campaign
// for the same resources each lead at most their share plus BalanceSlack,
// as candidates join and leave, and no two terms of a resource overlap.
func TestBalanceSharesResourcesFairly(t *testing.T) {
	const k = 24
	var resources []string
	for i := range k {
		resources = append(resources, fmt.Sprintf("shard-%02d", i))
	}
	f := newFleet(t, "") // terms are recorded per resource below
	balanced := func(o *consulelect.Options) { o.Balance, o.Resources = true, resources }
	start := func(id string) *consulelect.Election {
		opts := options(t, id)
		balanced(&opts)
		opts.Observer = recorder{log: &f.termLog, id: id}
		e := start(t, opts)
		f.byID[id] = e
		return e
	}
	counts := func() map[string]int {
		n := map[string]int{}
		for id, e := range f.byID {
			for _, r := range resources {
				if _, ok := e.Leader(r); ok {
					n[id]++
				}
			}
		}
		return n
	}
	awaitFair := func(ids ...string) {
		t.Helper()
		share := (k + len(ids) - 1) / len(ids)
		deadline := time.Now().Add(15 * time.Second)
		for {
			n, total, fair := counts(), 0, true
			for _, id := range ids {
				total += n[id]
				fair = fair && n[id] <= share+actors.BalanceSlack
			}
			if fair && total == k {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("leaderships %v; want each of %v at most %d, all %d held", n, ids, share+actors.BalanceSlack, k)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	a := start("a")
	awaitFair("a")
	start("b")
	start("c")
	awaitFair("a", "b", "c")
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	delete(f.byID, "a")
	awaitFair("b", "c")
	f.noOverlap()
}
