package chaos

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// The checker is tested on synthetic logs: each safety property must fail
// when broken, and pass when held.

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// lines logs a term of id with token from start to end (ms after t0), a beat
// every 2ms, and a stop line if stopped.
func lines(id string, token uint64, start, end int, stopped bool) []Event {
	events := []Event{{Kind: Start, ID: id, Token: token, At: at(start)}}
	for ms := start + 2; ms < end; ms += 2 {
		events = append(events, Event{Kind: Beat, ID: id, Token: token, At: at(ms)})
	}
	last := Beat
	if stopped {
		last = Stop
	}
	return append(events, Event{Kind: last, ID: id, Token: token, At: at(end)})
}

// interleave orders events by time, as the shared log (roughly) does.
func interleave(groups ...[]Event) []Event {
	var all []Event
	for _, g := range groups {
		all = append(all, g...)
	}
	slices.SortStableFunc(all, func(a, b Event) int { return a.At.Compare(b.At) })
	return all
}

var bounds = Bounds{TTL: 3 * time.Second, LockDelay: 1500 * time.Millisecond, KillGrace: 300 * time.Millisecond, Margin: time.Second}

func TestCheckerPassesACleanRun(t *testing.T) {
	events := interleave(
		lines("c1", 10, 0, 1000, false),
		lines("c2", 20, 8000, 9000, true),
		lines("c3", 30, 10600, 12000, false),
	)
	writes := []Write{
		{Accepted: true, ID: "c1", Token: 10, At: at(1)},
		{Accepted: true, ID: "c1", Token: 10, At: at(3)},
		{Accepted: true, ID: "c2", Token: 20, At: at(8001)},
		{Accepted: true, ID: "c3", Token: 30, At: at(10601)},
	}
	faults := []Fault{
		{Seq: 1, Kind: KillLeader, Target: "c1", Token: 10, At: at(1000)},
		{Seq: 2, Kind: DestroySession, Target: "c2", Token: 20, At: at(9000)},
	}
	r := Check(events, writes, faults, bounds)
	if p := r.SafetyProblems(); len(p) > 0 {
		t.Fatalf("a clean run has problems: %v", p)
	}
	if p := r.LivenessProblems(0); len(p) > 0 {
		t.Fatalf("a clean run has liveness problems: %v", p)
	}
	if len(r.Terms) != 3 || r.Transitions != 2 || r.Accepted != 4 {
		t.Fatalf("terms %d, transitions %d, accepted %d; want 3, 2, 4", len(r.Terms), r.Transitions, r.Accepted)
	}
	kill := r.Recoveries[0]
	if kill.Next == nil || kill.Next.ID != "c2" || kill.Failover != 7*time.Second || kill.NoLeader != 7*time.Second {
		t.Fatalf("after the kill: %+v; want c2 after 7s with 7s without a leader", kill)
	}
	if destroy := r.Recoveries[1]; destroy.Failover != 1600*time.Millisecond || destroy.NoLeader != 1600*time.Millisecond {
		t.Fatalf("after the destroy: failover %s, no leader %s; want 1.6s each", destroy.Failover, destroy.NoLeader)
	}
	if !strings.Contains(r.Summary(), "| kill | 1 | 1 |") {
		t.Fatalf("summary does not count the kill:\n%s", r.Summary())
	}
}

func TestCheckerFindsOverlapAfterAFaultThatDoesNotFreeze(t *testing.T) {
	for _, kind := range []FaultKind{KillLeader, CutLeader, LatencySpike, DestroySession, RestartAgent,
		HangupLeader, QuitLeader, HTTP500, HTTP429, DestroyFollowerSession, Switchover} {
		t.Run(string(kind), func(t *testing.T) {
			// c1's command outlived the fault by 5s, 3ms into c2's term.
			events := interleave(lines("c1", 10, 0, 5003, false), lines("c2", 20, 5000, 6000, false))
			faults := []Fault{{Seq: 1, Kind: kind, Target: "c1", Token: 10, At: at(0)}}
			r := Check(events, nil, faults, bounds)
			if len(r.Violations) != 1 || r.Violations[0].Duration != 3*time.Millisecond {
				t.Fatalf("violations %v; want one of 3ms", r.Violations)
			}
			if p := r.SafetyProblems(); len(p) != 1 || !strings.Contains(p[0], "c1/10") || !strings.Contains(p[0], "c2/20") {
				t.Fatalf("problems %q; want one naming both terms", p)
			}
		})
	}
}

func TestCheckerExplainsOverlapOnlyByTheFrozenLeader(t *testing.T) {
	// c1 frozen at 1000 for 9s; c2 leads from 8500; c1's command runs on for
	// 20ms after the resume.
	events := interleave(
		lines("c1", 10, 0, 1000, false),
		[]Event{{Kind: Beat, ID: "c1", Token: 10, At: at(10000)}, {Kind: Beat, ID: "c1", Token: 10, At: at(10020)}},
		lines("c2", 20, 8500, 12000, false),
	)
	freeze := Fault{Seq: 1, Kind: FreezeLeader, Target: "c1", Token: 10, At: at(1000), Healed: at(10000),
		Resumed: at(10000), CommandGone: at(10030)}
	r := Check(events, nil, []Fault{freeze}, bounds)
	if len(r.Violations) != 0 || len(r.Overlaps) != 1 || r.Overlaps[0].FrozenBy != 1 {
		t.Fatalf("overlaps %v, violations %v; want one explained by fault #1", r.Overlaps, r.Violations)
	}
	rec := r.Recoveries[0]
	if rec.StaleLifetime != 30*time.Millisecond || rec.StaleLastLine != 20*time.Millisecond {
		t.Fatalf("stale lifetime %s, last line %s; want 30ms and 20ms", rec.StaleLifetime, rec.StaleLastLine)
	}
	if rec.NoLeader != 7500*time.Millisecond {
		t.Fatalf("no leader for %s; want 7.5s (from the last line before the freeze)", rec.NoLeader)
	}

	// The same overlap, but the freeze hit another leader: a violation.
	other := freeze
	other.Target, other.Token = "c3", 5
	if r := Check(events, nil, []Fault{other}, bounds); len(r.Violations) != 1 {
		t.Fatalf("an overlap of a leader nobody froze was explained: %v", r.Overlaps)
	}
	// A freeze explains only the frozen leader's own term: the later term
	// overlapping a third one is not excused.
	third := interleave(events, lines("c3", 30, 11000, 11500, false))
	if r := Check(third, nil, []Fault{freeze}, bounds); len(r.Violations) != 1 || r.Violations[0].Earlier.ID != "c2" {
		t.Fatalf("violations %v; want c2 overlapping c3", r.Violations)
	}
}

func TestCheckerRequiresStrictlyIncreasingTokens(t *testing.T) {
	cases := map[string]struct {
		events []Event
		want   string
	}{
		"lower token later": {interleave(lines("c1", 20, 0, 100, true), lines("c2", 10, 200, 300, true)), "not greater"},
		"token reused":      {interleave(lines("c1", 20, 0, 100, true), lines("c2", 20, 200, 300, true)), "not greater"},
		"no start line":     {lines("c1", 20, 0, 100, true)[1:], "no start line"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := Check(c.events, nil, nil, bounds)
			if len(r.TokenErrors) != 1 || !strings.Contains(r.TokenErrors[0], c.want) {
				t.Fatalf("token errors %q; want one saying %q", r.TokenErrors, c.want)
			}
		})
	}
}

func TestCheckerFindsStaleAcceptedWrites(t *testing.T) {
	writes := []Write{
		{Accepted: true, ID: "c1", Token: 10},
		{Accepted: true, ID: "c2", Token: 20},
		{Accepted: false, ID: "c1", Token: 10, Highest: 20}, // fenced: fine
		{Accepted: true, ID: "c1", Token: 10, Highest: 20},  // stale: a violation
		{Accepted: false, ID: "c2", Token: 20, Highest: 20}, // a current writer refused
	}
	r := Check(nil, writes, nil, bounds)
	if r.Accepted != 3 || r.Rejected != 2 {
		t.Fatalf("accepted %d, rejected %d; want 3 and 2", r.Accepted, r.Rejected)
	}
	if len(r.StaleAccepts) != 1 || r.StaleAccepts[0].Token != 10 {
		t.Fatalf("stale accepts %v; want the third write of c1", r.StaleAccepts)
	}
	if len(r.WrongRejects) != 1 || r.WrongRejects[0].ID != "c2" {
		t.Fatalf("wrong rejects %v; want c2's", r.WrongRejects)
	}
	if p := r.SafetyProblems(); len(p) != 1 || !strings.Contains(p[0], "stale write accepted") {
		t.Fatalf("problems %q", p)
	}
}

func TestCheckerLivenessNeedsANewLeaderWithinTheBound(t *testing.T) {
	events := interleave(lines("c1", 10, 0, 1000, false), lines("c2", 20, 12000, 13000, false))
	faults := []Fault{
		{Seq: 1, Kind: CutLeader, Target: "c1", Token: 10, At: at(1000)},
		{Seq: 2, Kind: KillLeader, Target: "c2", Token: 20, At: at(13000)}, // nobody followed
		{Seq: 3, Kind: LatencySpike, Target: "c2", Token: 20, At: at(12500)},
	}
	r := Check(events, nil, faults, bounds)
	p := r.LivenessProblems(time.Second)
	if len(p) != 2 || !strings.Contains(p[0], "more than the bound") || !strings.Contains(p[1], "no new leader") {
		t.Fatalf("liveness problems %q; want the slow cut and the kill without a successor", p)
	}
	// A new term after a later fault is that fault's: the latency spike at
	// 12.5s was not followed by a new leader, c2's term belongs to the cut.
	if r.Recoveries[1].Fault.Kind != LatencySpike || r.Recoveries[1].Next != nil {
		t.Fatalf("recovery %+v; want the latency spike without a new leader", r.Recoveries[1])
	}
	if len(r.SafetyProblems()) != 0 {
		t.Fatalf("slow is not unsafe: %v", r.SafetyProblems())
	}
}

func TestCheckerHoldsBurstsAndHandoversToTheirOwnRules(t *testing.T) {
	// c1 led through a short 500 burst at 1s, lost its term to a long 429
	// burst at 2s (c2 from 5s), c2 was SIGHUPed at 6s (c3 from 8s: slower
	// than a handover may be); c3 kept its term through a long burst at 9s
	// and lost it to a short one at 10s (c4 from 11s).
	events := interleave(lines("c1", 10, 0, 2500, false), lines("c2", 20, 5000, 6000, true),
		lines("c3", 30, 8000, 10500, false), lines("c4", 40, 11000, 12000, false))
	faults := []Fault{
		{Seq: 1, Kind: HTTP500, Short: true, Target: "c1", Token: 10, At: at(1000)},
		{Seq: 2, Kind: HTTP429, Target: "c1", Token: 10, At: at(2000)},
		{Seq: 3, Kind: HangupLeader, Target: "c2", Token: 20, At: at(6000)},
		{Seq: 4, Kind: HTTP500, Target: "c3", Token: 30, At: at(9000)},
		{Seq: 5, Kind: HTTP429, Short: true, Target: "c3", Token: 30, At: at(10000)},
	}
	r := Check(events, nil, faults, bounds)
	p := r.LivenessProblems(0)
	want := []string{"fault #3 (sighup of c2/20): a new leader after 2s, more than the bound 1.3s",
		"fault #4 (http-500 of c3/30) was followed by no new leader",
		"fault #5 (http-429 of c3/30, ): a burst shorter than the step-down point ended the term"}
	if len(p) != len(want) {
		t.Fatalf("liveness problems %q; want %q", p, want)
	}
	for i := range want {
		if !strings.Contains(p[i], want[i]) {
			t.Errorf("problem %q; want %q", p[i], want[i])
		}
	}
}

func TestCheckerSeesWhetherAFollowerWithANewSessionLedAgain(t *testing.T) {
	events := interleave(lines("c1", 10, 0, 1000, false), lines("c2", 20, 2000, 3000, false))
	faults := []Fault{
		{Seq: 1, Kind: DestroyFollowerSession, Target: "c2", Token: 10, At: at(500)},
		{Seq: 2, Kind: DestroyFollowerSession, Target: "c3", Token: 10, At: at(600)},
	}
	r := Check(events, nil, faults, bounds)
	if !r.Recoveries[0].LedAgain || r.Recoveries[1].LedAgain {
		t.Fatalf("led again: c2 %v, c3 %v; want true, false", r.Recoveries[0].LedAgain, r.Recoveries[1].LedAgain)
	}
	if !strings.Contains(r.Summary(), "the follower led again later in 1 of 2") {
		t.Fatalf("summary:\n%s", r.Summary())
	}
}

func TestParseEventsAndWrites(t *testing.T) {
	e := Event{Kind: Beat, ID: "c-1", Token: 42, At: time.Unix(0, 1700000000123456789)}
	log := []byte("start c-1 42 1700000000000000000\n" + e.String() + "\n\nstop c-1 42 17000000")
	events, err := ParseEvents(log)
	if err != nil || len(events) != 2 || events[1] != e {
		t.Fatalf("ParseEvents = %v, %v; want 2 events, the last %v (a partial line is ignored)", events, err, e)
	}
	for _, bad := range []string{"beat c1 42\n", "jump c1 42 1\n", "beat c1 -4 1\n", "beat c1 4 x\n"} {
		if _, err := ParseEvents([]byte(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("ParseEvents(%q) = %v; want an error naming line 1", bad, err)
		}
	}
	w := Write{Accepted: false, ID: "c2", Token: 7, At: time.Unix(0, 99), Highest: 9}
	writes, err := ParseWrites([]byte(w.String() + "\naccept c2 9 100 9\nreject c2"))
	if err != nil || len(writes) != 2 || writes[0] != w || !writes[1].Accepted {
		t.Fatalf("ParseWrites = %v, %v", writes, err)
	}
	if _, err := ParseWrites([]byte("accept c2 9 100\n")); err == nil {
		t.Fatal("ParseWrites accepted a record without HIGHEST")
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond, 0: time.Millisecond} {
		if got := Percentile(ds, p); got != want {
			t.Errorf("p%v = %s; want %s", p, got, want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %s", got)
	}
	if got := Percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("p99 of one = %s", got)
	}
}

func ExampleReport_Summary() {
	events := interleave(lines("c1", 10, 0, 1000, false), lines("c2", 20, 8000, 9000, false))
	r := Check(events, nil, []Fault{{Seq: 1, Kind: KillLeader, Target: "c1", Token: 10, At: at(1000)}}, bounds)
	fmt.Println(strings.Split(r.Summary(), "\n")[4])
	// Output: | kill | 1 | 1 | — | — |
}
