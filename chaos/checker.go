package chaos

import (
	"fmt"
	"slices"
	"time"
)

// FaultKind names a fault the suite injects into the leader.
type FaultKind string

const (
	// KillLeader: SIGKILL of the leader's consul-elect (its shim then kills
	// the command's tree); the candidate is started again at once.
	KillLeader FaultKind = "kill"
	// FreezeLeader: SIGSTOP of the leader's consul-elect and its whole
	// command tree for longer than the TTL, then SIGCONT (a VM freeze).
	FreezeLeader FaultKind = "freeze-leader"
	// FreezeElect: SIGSTOP of the leader's consul-elect alone for longer than
	// the TTL, while its command runs on unsupervised, then SIGCONT.
	FreezeElect FaultKind = "freeze-elect"
	// CutLeader: the leader's connection to Consul is cut for longer than
	// the TTL (connections reset, new ones refused or blackholed).
	CutLeader FaultKind = "cut"
	// LatencySpike: latency added to the leader's connection for a while.
	LatencySpike FaultKind = "latency"
	// DestroySession: an operator destroys the leader's session.
	DestroySession FaultKind = "session-destroy"
	// RestartAgent: the Consul agent (the only server) restarts; its state
	// survives.
	RestartAgent FaultKind = "agent-restart"
	// HangupLeader and QuitLeader: SIGHUP or SIGQUIT of the leader's
	// consul-elect, which must hand over as on SIGTERM (stop the command,
	// release, exit); the candidate is started again.
	HangupLeader FaultKind = "sighup"
	QuitLeader   FaultKind = "sigquit"
	// HTTP500 and HTTP429: the leader's agent answers every request with
	// 500 (or 429) for a burst that begins with a renewal. A short burst
	// (ending before the leader's step-down point) must not cost the term;
	// a long one (past it) must end it.
	HTTP500 FaultKind = "http-500"
	HTTP429 FaultKind = "http-429"
	// DestroyFollowerSession: an operator destroys the session of a
	// candidate that waits; it must create another and campaign on.
	DestroyFollowerSession FaultKind = "follower-session-destroy"
	// Switchover: an operator's `consul-elect switchover`: the leader stops
	// its command, then releases, and another candidate leads.
	Switchover FaultKind = "switchover"
)

// FaultKinds lists every kind, in the order reports show them.
var FaultKinds = []FaultKind{KillLeader, FreezeLeader, FreezeElect, CutLeader, LatencySpike, DestroySession, RestartAgent,
	HangupLeader, QuitLeader, HTTP500, HTTP429, DestroyFollowerSession, Switchover, SnapshotRestore}

// Freezes reports whether the fault freezes the leader's consul-elect, so
// that it cannot stop its command in time: only then may leadership
// intervals overlap (safety property 2).
func (k FaultKind) Freezes() bool { return k == FreezeLeader || k == FreezeElect }

// ForcesTransition reports whether the fault always ends the leader's term:
// every kind but a latency spike (which ends it only when renewals become
// too slow), an agent restart (which a fast agent survives), an HTTP burst
// (which ends it only when long: see Fault.EndsTerm), a destroyed
// follower's session (which leaves the leader alone), and a Consul server
// killed or cut off (which a session outlives when the others elect a raft
// leader quickly enough).
func (k FaultKind) ForcesTransition() bool {
	switch k {
	case LatencySpike, RestartAgent, HTTP500, HTTP429, DestroyFollowerSession, RaftLeaderKill, ServerCut:
		return false
	}
	return true
}

// HTTPBurst reports whether the fault is a burst of error answers.
func (k FaultKind) HTTPBurst() bool { return k == HTTP500 || k == HTTP429 }

// HandsOver reports whether the fault asks the leader to end its term
// (a signal that stops consul-elect, a switchover): the successor follows
// the old command's exit and the release, without lock-delay.
func (k FaultKind) HandsOver() bool { return k == HangupLeader || k == QuitLeader || k == Switchover }

// Fault is one injected fault, as the harness recorded it.
type Fault struct {
	Seq    int
	Kind   FaultKind
	Target string    // the leader's candidate id; the follower's for DestroyFollowerSession
	Token  uint64    // the leader's fencing token when the fault was injected
	At     time.Time // injected
	Healed time.Time // undone: resumed, reconnected, agent ready; At for a kill or a destroy
	// Resumed is when the frozen consul-elect got SIGCONT (freeze faults),
	// and CommandGone when its command was first seen gone after that
	// (zero: not measured).
	Resumed, CommandGone time.Time
	// Extra is added to the failover bound: the agent's restart time.
	Extra time.Duration
	// Latency is a latency spike's, added each way.
	Latency time.Duration
	// Burst is an HTTP burst's length, and Short says it was drawn to end
	// before the leader's step-down point (then the leader must keep its
	// term; a long one must end it).
	Burst time.Duration
	Short bool
	// FastFailover says the target ran with --fast-failover.
	FastFailover bool
	Params       string // for reports, e.g. "5.2s blackhole"
}

// EndsTerm reports whether the fault must end the leader's term.
func (f Fault) EndsTerm() bool { return f.Kind.ForcesTransition() || f.Kind.HTTPBurst() && !f.Short }

// KeepsTerm reports whether the leader must keep its term through the fault.
func (f Fault) KeepsTerm() bool { return f.Kind.HTTPBurst() && f.Short }

// Bounds are the configuration the run used, and the failover bound it
// implies.
type Bounds struct {
	TTL, LockDelay, KillGrace time.Duration
	// Margin covers what the bound's other terms do not: a blocking query
	// noticing the free key, an acquire, starting the command.
	Margin time.Duration
}

// Failover is 2×TTL + lock-delay + margin: Consul expires a session at most
// 2×TTL after its last renewal, then keeps the key for lock-delay.
func (b Bounds) Failover() time.Duration { return 2*b.TTL + b.LockDelay + b.Margin }

// Handover is kill grace + margin: a leader asked to end its term stops its
// command (within the kill grace), then releases the key, which the next
// candidate locks at once (a release brings no lock-delay).
func (b Bounds) Handover() time.Duration { return b.KillGrace + b.Margin }

// bound is the fault's failover bound.
func (b Bounds) bound(f Fault) time.Duration {
	if f.Kind.HandsOver() {
		return b.Handover() + f.Extra
	}
	return b.Failover() + f.Extra
}

// Term is one leadership as its command logged it: from the start line to
// the last line of the same candidate and fencing token.
type Term struct {
	ID         string
	Token      uint64
	Start, End time.Time
	SawStart   bool
	SawStop    bool
	Lines      int
	times      []time.Time // of every line, in order
}

func (t Term) String() string {
	return fmt.Sprintf("%s/%d [%s, %s]", t.ID, t.Token, t.Start.Format("15:04:05.000000"), t.End.Format("15:04:05.000000"))
}

// lastBefore returns the time of the term's last line before x, false if
// there is none.
func (t *Term) lastBefore(x time.Time) (time.Time, bool) {
	i, _ := slices.BinarySearchFunc(t.times, x, func(a, b time.Time) int { return a.Compare(b) })
	if i == 0 {
		return time.Time{}, false
	}
	return t.times[i-1], true
}

// Overlap is two terms alive at the same time.
type Overlap struct {
	Earlier, Later Term
	Duration       time.Duration
	// FrozenBy is the Seq of the freeze fault that froze Earlier's leader,
	// which explains the overlap (property 2); 0 if none: a violation.
	FrozenBy int
}

func (o Overlap) String() string {
	return fmt.Sprintf("%s and %s overlap by %s", o.Earlier, o.Later, o.Duration)
}

// Recovery is what followed one fault.
type Recovery struct {
	Fault Fault
	// Next is the first term that started after the fault, with a higher
	// token, before the next fault; nil if the leader kept leading.
	Next *Term
	// Failover is from the fault to Next's start; NoLeader from the last
	// line of any other term before Next started to Next's start (negative
	// would mean an overlap).
	Failover, NoLeader time.Duration
	// OldLived is from the fault to the last line of the leader it hit.
	OldLived time.Duration
	// StaleLifetime (freeze faults, when measured) is from consul-elect's
	// SIGCONT until its command was gone; StaleLastLine until the command's
	// last line, when it wrote one after SIGCONT.
	StaleLifetime, StaleLastLine time.Duration
	Bound                        time.Duration
	// LedAgain (a destroyed follower's session) says the follower led at
	// some point after the fault, with its new session.
	LedAgain bool
}

// Report is what Check found.
type Report struct {
	Bounds      Bounds
	Terms       []Term
	Overlaps    []Overlap // every overlap
	Violations  []Overlap // overlaps no freeze explains: property 1 broken
	TokenErrors []string  // tokens not strictly increasing, reused, or a term without a start line
	// Accepted and Rejected count the store's decisions; StaleAccepts are
	// accepted writes with a token lower than one accepted before (property
	// 2 broken); WrongRejects are rejected writes whose token was not lower
	// than any accepted before by the record (a store bug, or a writer
	// killed between updating the store and recording the write).
	Accepted, Rejected int
	StaleAccepts       []Write
	WrongRejects       []Write
	Recoveries         []Recovery
	Transitions        int // faults followed by a new term
}

// Check reads a run: the leadership log, the store's record (in its order)
// and the faults the harness injected.
func Check(events []Event, writes []Write, faults []Fault, bounds Bounds) *Report {
	r := &Report{Bounds: bounds}
	r.Terms = terms(events)
	r.checkTokens()
	r.checkOverlaps(faults)
	r.checkWrites(writes)
	r.recoveries(faults)
	return r
}

type termKey struct {
	id    string
	token uint64
}

// terms groups lines into terms, ordered by start.
func terms(events []Event) []Term {
	byKey := map[termKey]*Term{}
	var order []*Term
	for _, e := range events {
		k := termKey{e.ID, e.Token}
		t := byKey[k]
		if t == nil {
			t = &Term{ID: e.ID, Token: e.Token, Start: e.At, End: e.At}
			byKey[k] = t
			order = append(order, t)
		}
		t.Lines++
		t.times = append(t.times, e.At)
		switch e.Kind {
		case Start:
			t.SawStart = true
		case Stop:
			t.SawStop = true
		}
		if e.At.Before(t.Start) {
			t.Start = e.At
		}
		if e.At.After(t.End) {
			t.End = e.At
		}
	}
	out := make([]Term, len(order))
	for i, t := range order {
		slices.SortFunc(t.times, func(a, b time.Time) int { return a.Compare(b) })
		out[i] = *t
	}
	slices.SortStableFunc(out, func(a, b Term) int { return a.Start.Compare(b.Start) })
	return out
}

// checkTokens: every term logged its start, and tokens strictly increase
// from one term to the next in the order they started, so no token belongs
// to two candidates.
func (r *Report) checkTokens() {
	for i, t := range r.Terms {
		if !t.SawStart {
			r.TokenErrors = append(r.TokenErrors, fmt.Sprintf("term %s has no start line", t))
		}
		if i > 0 && t.Token <= r.Terms[i-1].Token {
			r.TokenErrors = append(r.TokenErrors, fmt.Sprintf("term %s started after %s with a token not greater", t, r.Terms[i-1]))
		}
	}
}

// checkOverlaps finds every pair of terms alive at once; those whose earlier
// term's leader was frozen by a freeze fault are explained.
func (r *Report) checkOverlaps(faults []Fault) {
	frozen := map[termKey]int{}
	for _, f := range faults {
		if f.Kind.Freezes() {
			frozen[termKey{f.Target, f.Token}] = f.Seq
		}
	}
	for i, a := range r.Terms {
		for _, b := range r.Terms[i+1:] {
			if !b.Start.Before(a.End) {
				break // terms are ordered by start
			}
			o := Overlap{Earlier: a, Later: b, Duration: minTime(a.End, b.End).Sub(b.Start)}
			if o.Duration <= 0 {
				continue // b started exactly when a ended
			}
			o.FrozenBy = frozen[termKey{a.ID, a.Token}]
			r.Overlaps = append(r.Overlaps, o)
			if o.FrozenBy == 0 {
				r.Violations = append(r.Violations, o)
			}
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// checkWrites replays the store's record: an accepted write must carry a
// token at least the highest accepted before it.
func (r *Report) checkWrites(writes []Write) {
	var highest uint64
	for _, w := range writes {
		if !w.Accepted {
			r.Rejected++
			if w.Token >= highest {
				r.WrongRejects = append(r.WrongRejects, w)
			}
			continue
		}
		r.Accepted++
		if w.Token < highest {
			r.StaleAccepts = append(r.StaleAccepts, w)
			continue
		}
		highest = w.Token
	}
}

// recoveries finds, for each fault, the term that followed it and the
// figures around it.
func (r *Report) recoveries(faults []Fault) {
	faults = slices.Clone(faults)
	slices.SortFunc(faults, func(a, b Fault) int { return a.At.Compare(b.At) })
	byKey := map[termKey]*Term{}
	for i := range r.Terms {
		byKey[termKey{r.Terms[i].ID, r.Terms[i].Token}] = &r.Terms[i]
	}
	for i, f := range faults {
		rec := Recovery{Fault: f, Bound: r.Bounds.bound(f)}
		var until time.Time // the next fault: a later term is its doing
		if i+1 < len(faults) {
			until = faults[i+1].At
		}
		for j := range r.Terms {
			t := &r.Terms[j]
			if t.Start.After(f.At) && t.Token > f.Token && (until.IsZero() || t.Start.Before(until)) {
				rec.Next = t
				break
			}
		}
		if rec.Next != nil {
			r.Transitions++
			rec.Failover = rec.Next.Start.Sub(f.At)
			var last time.Time
			for j := range r.Terms {
				t := &r.Terms[j]
				if t == rec.Next {
					continue
				}
				if at, ok := t.lastBefore(rec.Next.Start); ok && at.After(last) {
					last = at
				}
			}
			if !last.IsZero() {
				rec.NoLeader = rec.Next.Start.Sub(last)
			}
		}
		if f.Kind == DestroyFollowerSession {
			for _, t := range r.Terms {
				if t.ID == f.Target && t.Start.After(f.At) {
					rec.LedAgain = true
					break
				}
			}
		}
		rec.StaleLifetime, rec.StaleLastLine = -1, -1
		if old := byKey[termKey{f.Target, f.Token}]; old != nil {
			rec.OldLived = old.End.Sub(f.At)
			if !f.Resumed.IsZero() && old.End.After(f.Resumed) {
				rec.StaleLastLine = old.End.Sub(f.Resumed)
			}
		}
		if !f.Resumed.IsZero() && !f.CommandGone.IsZero() {
			rec.StaleLifetime = f.CommandGone.Sub(f.Resumed)
		}
		r.Recoveries = append(r.Recoveries, rec)
	}
}

// SafetyProblems lists what breaks the safety properties: overlaps no freeze
// explains, tokens not strictly increasing, stale writes accepted.
func (r *Report) SafetyProblems() []string {
	var problems []string
	for _, o := range r.Violations {
		problems = append(problems, "overlap without a freeze: "+o.String())
	}
	problems = append(problems, r.TokenErrors...)
	for _, w := range r.StaleAccepts {
		problems = append(problems, fmt.Sprintf("stale write accepted: %s wrote with token %d after token %d had written", w.ID, w.Token, w.Highest))
	}
	return problems
}

// LivenessProblems lists faults after which leadership did not move when it
// had to, or moved later than the bound plus slack.
func (r *Report) LivenessProblems(slack time.Duration) []string {
	var problems []string
	for _, rec := range r.Recoveries {
		f := rec.Fault
		switch {
		case rec.Next == nil && f.EndsTerm():
			problems = append(problems, fmt.Sprintf("fault #%d (%s of %s/%d) was followed by no new leader", f.Seq, f.Kind, f.Target, f.Token))
		case rec.Next != nil && f.KeepsTerm():
			problems = append(problems, fmt.Sprintf("fault #%d (%s of %s/%d, %s): a burst shorter than the step-down point ended the term", f.Seq, f.Kind, f.Target, f.Token, f.Params))
		case rec.Next != nil && rec.Failover > rec.Bound+slack:
			problems = append(problems, fmt.Sprintf("fault #%d (%s of %s/%d): a new leader after %s, more than the bound %s + %s",
				f.Seq, f.Kind, f.Target, f.Token, rec.Failover.Round(time.Millisecond), rec.Bound, slack))
		}
	}
	return problems
}

// Percentile is the nearest-rank p-th percentile of ds (0 if empty).
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	rank := int(p/100*float64(len(sorted)) + 0.999999)
	return sorted[max(min(rank, len(sorted)), 1)-1]
}

// byKind groups recoveries by fault kind, in FaultKinds order.
func (r *Report) byKind() map[FaultKind][]Recovery {
	out := map[FaultKind][]Recovery{}
	for _, rec := range r.Recoveries {
		out[rec.Fault.Kind] = append(out[rec.Fault.Kind], rec)
	}
	return out
}
