//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/devconsul"
)

// The operator's view of several candidates: list, status, switchover,
// priorities, preemption, /leader and routing through a Consul service.

// routedService is the service the candidates of these tests register as.
const routedService = "orders"

// operated is a `run` candidate with what an operator sees of it.
type operated struct {
	*proc
	priority    int
	metricsAddr string // where /leader answers
}

// startThree starts candidates a (priority 1), b (5) and c (10) for r, each
// with /leader on its own --metrics-addr and an instance of routedService;
// a first, so that it leads. It returns once status lists all three.
func startThree(t *testing.T, agent *devconsul.Agent, dir string, flags ...string) map[string]*operated {
	t.Helper()
	candidates := map[string]*operated{}
	for i, id := range []string{"a", "b", "c"} {
		c := &operated{priority: []int{1, 5, 10}[i], metricsAddr: freeAddress(t)}
		c.proc = runCandidate(t, agent, dir, id, append([]string{"--priority", fmt.Sprint(c.priority),
			"--metrics-addr", c.metricsAddr, "--service", routedService, "--service-port", fmt.Sprint(8001 + i)}, flags...)...)
		candidates[id] = c
		if id == "a" {
			if first := firstLeader(t, dir); first.ID != "a" {
				t.Fatalf("%s leads; want a, the only candidate", first.ID)
			}
		}
	}
	awaitStatus(t, agent, "status to list c, b and a", func(s resourceState) bool {
		return slices.Equal(candidateIDs(s), []string{"c", "b", "a"})
	})
	return candidates
}

func candidateIDs(s resourceState) []string {
	ids := make([]string, len(s.Candidates))
	for i, c := range s.Candidates {
		ids[i] = c.ID
	}
	return ids
}

// leaderAnswer is the status code of GET /leader on addr.
func leaderAnswer(t *testing.T, addr string) int {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/leader")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// routed lists, sorted, the candidates whose instances of routedService
// the agent reports passing, with tag if not empty.
func routed(t *testing.T, agent *devconsul.Agent, tag string) []string {
	t.Helper()
	url := agent.URL() + "/v1/health/service/" + routedService + "?passing"
	if tag != "" {
		url += "&tag=" + tag
	}
	var entries []struct {
		Service struct{ Meta map[string]string }
	}
	if err := json.Unmarshal([]byte(get(t, url)), &entries); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Service.Meta["candidate_id"])
	}
	slices.Sort(ids)
	return ids
}

// awaitRouting waits until everything that routes clients names leader
// alone: /leader answers 200 on leader and 503 on the other live
// candidates, and of the passing instances of routedService, which are
// exactly those of the live candidates, only leader's is tagged leader. A
// killed candidate's instance stays passing until its check's TTL (10s).
func awaitRouting(t *testing.T, agent *devconsul.Agent, candidates map[string]*operated, leader string, live ...string) {
	t.Helper()
	slices.Sort(live)
	var seen string
	deadline := time.Now().Add(30 * time.Second)
	for {
		answers := map[string]int{}
		ok := true
		for _, id := range live {
			answers[id] = leaderAnswer(t, candidates[id].metricsAddr)
			ok = ok && (answers[id] == http.StatusOK) == (id == leader)
		}
		tagged, passing := routed(t, agent, "leader"), routed(t, agent, "")
		ok = ok && slices.Equal(tagged, []string{leader}) && slices.Equal(passing, live)
		if ok {
			return
		}
		seen = fmt.Sprintf("/leader answers %v, leader-tagged passing instances %v, passing instances %v", answers, tagged, passing)
		if time.Now().After(deadline) {
			t.Fatalf("routing does not name %s alone among %v: %s", leader, live, seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// switchover runs consul-elect switchover for r with stdin as the answer.
func switchover(t *testing.T, agent *devconsul.Agent, stdin string, flags ...string) (code int, stdout, stderr string) {
	t.Helper()
	return consulElect(t, stdin, append([]string{"switchover", "--address", agent.URL(), "--resource", "r"}, flags...)...)
}

// termsOf returns the records of candidate id's commands getting SIGTERM.
func termsOf(t *testing.T, dir, id string) []record {
	var out []record
	for _, r := range events(t, dir, "term") {
		if r.ID == id {
			out = append(out, r)
		}
	}
	return out
}

func TestListAndStatusShowEveryCandidateAndOnlyTheLeaderAnswersLeader(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	dir := t.TempDir()
	candidates := startThree(t, agent, dir)

	// Under the prefix, besides r: a consul-elect key nobody holds (its
	// leader released it), another application's key and a deeper path.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := consul.NewClient(consul.Config{Address: agent.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	session, err := client.CreateSession(ctx, consul.SessionSpec{Name: "gone", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	value := consul.EncodeValue(consul.Value{CandidateID: "gone"})
	if _, err := client.Acquire(ctx, "excalibur/leader-election/idle", session, value); err != nil {
		t.Fatal(err)
	}
	if err := client.Release(ctx, "excalibur/leader-election/idle", session, value); err != nil {
		t.Fatal(err)
	}
	if err := client.DestroySession(ctx, session); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"excalibur/leader-election/other-app", "excalibur/leader-election/deeper/path"} {
		if err := agent.Operator().Put(ctx, key, []byte("not ours"), 0); err != nil {
			t.Fatal(err)
		}
	}

	first := startedBy(t, dir, "a")[0]
	s := status(t, agent)
	wantLeader(t, agent, s.leaderState, first)
	for i, c := range s.Candidates {
		started, err := time.Parse(time.RFC3339Nano, c.Started)
		if c.Priority != []int{10, 5, 1}[i] || !c.Healthy || c.Reason != "" || c.Node != agent.NodeName() || c.Version == "" ||
			err != nil || time.Since(started) < 0 || time.Since(started) > time.Minute {
			t.Fatalf("status --json candidate %+v: want priority %d, healthy, node %s, a version and a recent start",
				c, []int{10, 5, 1}[i], agent.NodeName())
		}
	}

	code, stdout, stderr := consulElect(t, "", "list", "--address", agent.URL(), "--json")
	if code != 0 {
		t.Fatalf("list --json: exit %d: %s", code, stderr)
	}
	var objects []json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &objects); err != nil {
		t.Fatalf("list --json printed %q, not one JSON array: %v", stdout, err)
	}
	var listed []resourceState
	for _, o := range objects {
		var state resourceState
		decodeObject(t, string(o), append(slices.Clone(stateKeys), candidateKey), &state)
		listed = append(listed, state)
	}
	if len(listed) != 2 || listed[0].Resource != "idle" || listed[1].Resource != "r" {
		t.Fatalf("list --json: %s; want the resources idle and r, in that order, and no other key", stdout)
	}
	if idle := listed[0]; !idle.equal(leaderState{Resource: "idle", Metadata: map[string]string{}}) || len(idle.Candidates) != 0 {
		t.Fatalf("list --json says of idle, which nobody leads nor campaigns for: %+v", idle)
	}
	if r := listed[1]; !r.equal(s.leaderState) || !slices.Equal(candidateIDs(r), []string{"c", "b", "a"}) {
		t.Fatalf("list --json says of r %+v; status says %+v", r, s)
	}

	_, text, _ := consulElect(t, "", "list", "--address", agent.URL())
	rows := strings.Split(strings.TrimSpace(text), "\n")
	if len(rows) != 3 || !strings.HasPrefix(rows[0], "RESOURCE") ||
		strings.Fields(rows[1])[0] != "idle" || strings.Fields(rows[1])[1] != "-" ||
		strings.Fields(rows[2])[0] != "r" || strings.Fields(rows[2])[1] != "a" || !strings.HasSuffix(rows[2], "c(10) b(5) a(1)") {
		t.Fatalf("list printed:\n%s\nwant a header, then idle without a leader, then r led by a with candidates c(10) b(5) a(1)", text)
	}
	_, text, _ = consulElect(t, "", "status", "--address", agent.URL(), "--resource", "r")
	for _, want := range []string{"led by a", "CANDIDATE", "leader", "standby", "healthy"} {
		if !strings.Contains(text, want) {
			t.Fatalf("status does not say %q:\n%s", want, text)
		}
	}

	awaitRouting(t, agent, candidates, "a", "a", "b", "c")
}

func TestSwitchoverHandsOverSafelyAndRoutingFollowsTheLeader(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	dir := t.TempDir()
	// A lock-delay longer than the engine's one-second priority hold-back:
	// once the killed leader's session is invalidated, a lower priority
	// that waited out its hold-back still finds the key locked, and holds
	// back again when the delay ends.
	candidates := startThree(t, agent, dir, "--lock-delay", "3s")
	first := startedBy(t, dir, "a")[0]
	awaitRouting(t, agent, candidates, "a", "a", "b", "c")

	// Refused, or not confirmed: nothing moves.
	code, stdout, stderr := switchover(t, agent, "", "--to", "nosuch", "--yes")
	if code != exitRuntime || strings.Count(strings.TrimSpace(stderr), "\n") != 0 ||
		!strings.Contains(stderr, "nosuch is not a live candidate") || !strings.Contains(stderr, "nothing was changed") {
		t.Fatalf("switchover --to nosuch: exit %d, stdout %q, stderr %q; want 1 and one line naming nosuch", code, stdout, stderr)
	}
	code, stdout, stderr = switchover(t, agent, "n\n", "--to", "b")
	if code != exitRuntime || !strings.Contains(stdout, "b (priority 5") || !strings.Contains(stderr, "not confirmed") {
		t.Fatalf("switchover answered no: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	time.Sleep(time.Second) // a handover would have begun by now
	if s := status(t, agent); s.LeaderID != "a" || s.Session != first.Session || fmt.Sprint(s.FencingToken) != first.FencingToken {
		t.Fatalf("after a refused switchover status says %+v; a's term was %+v", s.leaderState, first)
	}
	if terms := events(t, dir, "term"); len(terms) > 0 {
		t.Fatalf("a command was stopped although no switchover was made: %+v", terms)
	}

	// To b, below c in priority: a stops its command, then b starts its own.
	code, stdout, stderr = switchover(t, agent, "y\n", "--to", "b")
	if code != 0 || !strings.Contains(stdout, "b now leads excalibur/leader-election/r") {
		t.Fatalf("switchover --to b: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// switchover returns once b holds the key; its command starts just after.
	waitFor(t, 10*time.Second, "b's command to start", func() bool { return len(startedBy(t, dir, "b")) > 0 })
	toB := startedBy(t, dir, "b")
	stopped := termsOf(t, dir, "a")
	if len(toB) != 1 || len(stopped) != 1 || stopped[0].PID != first.PID || !stopped[0].At.Before(toB[0].At) || token(t, toB[0]) <= token(t, first) {
		t.Fatalf("a's command got SIGTERM %+v; b's started %+v: want a's stopped first, then b's alone, with a greater token", stopped, toB)
	}
	if s := status(t, agent); s.LeaderID != "b" || s.Session != toB[0].Session {
		t.Fatalf("after the switchover status says %+v; b's command has %+v", s.leaderState, toB[0])
	}
	awaitRouting(t, agent, candidates, "b", "a", "b", "c")

	// Without --to: the healthy candidate of highest priority but the leader.
	code, stdout, stderr = switchover(t, agent, "", "--yes")
	if code != 0 || !strings.Contains(stdout, "c now leads") {
		t.Fatalf("switchover without --to: exit %d, stdout %q, stderr %q; want c, of the highest priority", code, stdout, stderr)
	}
	awaitRouting(t, agent, candidates, "c", "a", "b", "c")

	// The leader killed: the survivor of highest priority takes over once
	// Consul has invalidated its session (up to twice the 4s TTL, then the
	// lock-delay).
	candidates["c"].signal(syscall.SIGKILL)
	waitFor(t, 40*time.Second, "a new leader after c was killed", func() bool {
		return len(startedBy(t, dir, "b")) == 2 || len(startedBy(t, dir, "a")) == 2
	})
	if again := startedBy(t, dir, "a"); len(again) != 1 {
		t.Fatalf("a (priority 1) took over from the killed c, not b (priority 5): %+v", again[1:])
	}
	awaitRouting(t, agent, candidates, "b", "a", "b")
	noOverlap(t, dir)
}

func TestPreemptHandsOverOnceToAHigherPriorityThatStartsLater(t *testing.T) {
	for _, tc := range []struct {
		name  string
		joins time.Duration // into low's term
	}{
		{"before PreemptAfter", 0},                                // low hands over when its term has lasted PreemptAfter
		{"after PreemptAfter", actors.PreemptAfter + time.Second}, // low hands over as soon as it sees high
	} {
		t.Run("high joins "+tc.name, func(t *testing.T) {
			agent := devconsul.ForTest(t, devconsul.Config{})
			dir := t.TempDir()
			runCandidate(t, agent, dir, "low", "--priority", "1", "--preempt")
			low := firstLeader(t, dir)
			// The term began when low wrote the key, before its engine knew.
			since, err := time.Parse(time.RFC3339Nano, status(t, agent).Since)
			if err != nil {
				t.Fatal(err)
			}

			time.Sleep(tc.joins)
			runCandidate(t, agent, dir, "high", "--priority", "9", "--preempt")
			waitFor(t, actors.PreemptAfter+30*time.Second, "high to lead", func() bool { return len(startedBy(t, dir, "high")) > 0 })
			stopped := termsOf(t, dir, "low")
			if len(stopped) != 1 || stopped[0].PID != low.PID || stopped[0].At.Sub(since) < actors.PreemptAfter {
				t.Fatalf("low's command got SIGTERM %+v, its term began %s: want once, at least %s into the term",
					stopped, since.Format(time.RFC3339Nano), actors.PreemptAfter)
			}

			// And it stays there: low has the lower priority, and high leads
			// for longer than PreemptAfter.
			time.Sleep(actors.PreemptAfter + 2*time.Second)
			if starts := events(t, dir, "start"); len(starts) != 2 {
				t.Fatalf("leadership moved again: %+v", starts)
			}
			if s := status(t, agent); s.LeaderID != "high" || !slices.Equal(candidateIDs(s), []string{"high", "low"}) {
				t.Fatalf("status says %+v; want high leading, low standing by", s)
			}
			noOverlap(t, dir)
		})
	}
}
