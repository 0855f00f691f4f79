package chaos

import (
	"fmt"
	"strings"
	"time"
)

// Summary renders the report as Markdown tables: safety per fault kind,
// timing per fault kind against the failover bound, and the stale command's
// lifetime after a freeze.
func (r *Report) Summary() string {
	var b strings.Builder
	groups := r.byKind()

	overlapsBy := map[FaultKind][]Overlap{}
	kindOf := map[int]FaultKind{}
	for _, rec := range r.Recoveries {
		kindOf[rec.Fault.Seq] = rec.Fault.Kind
	}
	for _, o := range r.Overlaps {
		if o.FrozenBy != 0 {
			overlapsBy[kindOf[o.FrozenBy]] = append(overlapsBy[kindOf[o.FrozenBy]], o)
		}
	}

	fmt.Fprintf(&b, "Safety (%d terms of leadership, %d faults, %d followed by a new leader)\n\n", len(r.Terms), len(r.Recoveries), r.Transitions)
	b.WriteString("| fault | injected | new leader after | overlaps explained by the freeze | longest such overlap |\n|---|---|---|---|---|\n")
	for _, kind := range reportKinds() {
		recs := groups[kind]
		if len(recs) == 0 {
			continue
		}
		moved := 0
		for _, rec := range recs {
			if rec.Next != nil {
				moved++
			}
		}
		explained, longest := "—", "—"
		if kind.Freezes() {
			os := overlapsBy[kind]
			explained = fmt.Sprint(len(os))
			var most time.Duration
			for _, o := range os {
				most = max(most, o.Duration)
			}
			if len(os) > 0 {
				longest = ms(most)
			}
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s |\n", kind, len(recs), moved, explained, longest)
	}
	fmt.Fprintf(&b, "\n- Overlapping intervals no freeze explains (property 1): **%d**\n", len(r.Violations))
	fmt.Fprintf(&b, "- Fencing tokens strictly increasing across %d terms: **%s**\n", len(r.Terms), yesNo(len(r.TokenErrors) == 0))
	fmt.Fprintf(&b, "- Store: %d writes accepted, %d refused for a stale token, **%d stale writes accepted** (property 2)",
		r.Accepted, r.Rejected, len(r.StaleAccepts))
	if len(r.WrongRejects) > 0 {
		fmt.Fprintf(&b, ", %d current-token writes refused", len(r.WrongRejects))
	}
	b.WriteString("\n\n")

	fmt.Fprintf(&b, "Time to a new leader, from the fault (bound 2×TTL + lock-delay + margin = %s; for a handover — sighup, sigquit, switchover — kill grace + margin = %s; agent restarts add their restart time)\n\n",
		r.Bounds.Failover(), r.Bounds.Handover())
	b.WriteString("| fault | new leaders | failover p50 | p99 | max | over the bound | no leader p50 | p99 | max | old command's last line after the fault, max |\n|---|---|---|---|---|---|---|---|---|---|\n")
	var allFailover, allNoLeader []time.Duration
	allOver, allMoved := 0, 0
	for _, kind := range reportKinds() {
		recs := groups[kind]
		if len(recs) == 0 {
			continue
		}
		var failover, noLeader []time.Duration
		over := 0
		oldLived := time.Duration(0)
		for _, rec := range recs {
			if rec.Next == nil {
				continue // the leader kept leading: its command lives on
			}
			oldLived = max(oldLived, rec.OldLived)
			failover = append(failover, rec.Failover)
			noLeader = append(noLeader, rec.NoLeader)
			if rec.Failover > rec.Bound {
				over++
			}
		}
		allFailover = append(allFailover, failover...)
		allNoLeader = append(allNoLeader, noLeader...)
		allOver += over
		allMoved += len(failover)
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %d | %s | %s | %s | %s |\n", kind, len(failover),
			msP(failover, 50), msP(failover, 99), msP(failover, 100), over,
			msP(noLeader, 50), msP(noLeader, 99), msP(noLeader, 100), ms(oldLived))
	}
	fmt.Fprintf(&b, "| all | %d | %s | %s | %s | %d | %s | %s | %s | |\n\n", allMoved,
		msP(allFailover, 50), msP(allFailover, 99), msP(allFailover, 100), allOver,
		msP(allNoLeader, 50), msP(allNoLeader, 99), msP(allNoLeader, 100))

	var kept, ended []time.Duration
	for _, rec := range groups[LatencySpike] {
		if rec.Next == nil {
			kept = append(kept, rec.Fault.Latency)
		} else {
			ended = append(ended, rec.Fault.Latency)
		}
	}
	if len(kept)+len(ended) > 0 {
		b.WriteString("Latency spikes:")
		if len(kept) > 0 {
			fmt.Fprintf(&b, " the leader kept its term through %d (the largest +%s each way);", len(kept), msP(kept, 100))
		}
		if len(ended) > 0 {
			fmt.Fprintf(&b, " it stepped down in %d (the smallest +%s each way);", len(ended), msP(ended, 0))
		}
		b.WriteString(" a spike ends a term only when renewals become too slow\n\n")
	}

	for _, kind := range []FaultKind{HTTP500, HTTP429} {
		var keptShort, movedShort, keptLong, movedLong int
		var short, long []time.Duration
		for _, rec := range groups[kind] {
			f := rec.Fault
			switch {
			case f.Short && rec.Next == nil:
				keptShort++
			case f.Short:
				movedShort++
			case rec.Next == nil:
				keptLong++
			default:
				movedLong++
			}
			if f.Short {
				short = append(short, f.Burst)
			} else {
				long = append(long, f.Burst)
			}
		}
		if len(short)+len(long) > 0 {
			fmt.Fprintf(&b, "Bursts of %s answers: %d short (%s … %s, before the step-down point): the leader kept its term in %d, **lost it in %d**; %d long (%s … %s): it stepped down in %d, **kept its term in %d**\n\n",
				strings.TrimPrefix(string(kind), "http-"), len(short), msP(short, 0), msP(short, 100), keptShort, movedShort,
				len(long), msP(long, 0), msP(long, 100), movedLong, keptLong)
		}
	}

	if recs := groups[DestroyFollowerSession]; len(recs) > 0 {
		var renewed []time.Duration
		ledAgain := 0
		for _, rec := range recs {
			renewed = append(renewed, rec.Fault.Healed.Sub(rec.Fault.At))
			if rec.LedAgain {
				ledAgain++
			}
		}
		fmt.Fprintf(&b, "Followers' sessions destroyed: %d; a new session after p50 %s, max %s; the follower led again later in %d of %d\n\n",
			len(recs), msP(renewed, 50), msP(renewed, 100), ledAgain, len(recs))
	}

	var ffKill, otherKill []time.Duration
	for _, rec := range groups[KillLeader] {
		switch {
		case rec.Next == nil:
		case rec.Fault.FastFailover:
			ffKill = append(ffKill, rec.Failover)
		default:
			otherKill = append(otherKill, rec.Failover)
		}
	}
	if len(ffKill) > 0 {
		fmt.Fprintf(&b, "Kills of the fast-failover candidate when it led: %d, a new leader after p50 %s, max %s; of the others: %d, p50 %s, max %s\n\n",
			len(ffKill), msP(ffKill, 50), msP(ffKill, 100), len(otherKill), msP(otherKill, 50), msP(otherKill, 100))
	}

	var lifetimes, lastLines []time.Duration
	for _, rec := range r.Recoveries {
		if rec.StaleLifetime >= 0 {
			lifetimes = append(lifetimes, rec.StaleLifetime)
		}
		if rec.StaleLastLine >= 0 {
			lastLines = append(lastLines, rec.StaleLastLine)
		}
	}
	if len(lifetimes) > 0 || len(lastLines) > 0 {
		fmt.Fprintf(&b, "Stale command after consul-elect resumed (freeze faults; goal ≤ 100 ms): gone after p50 %s, p99 %s, max %s (%d measured); its last line p50 %s, max %s (%d wrote after the resume)\n",
			msP(lifetimes, 50), msP(lifetimes, 99), msP(lifetimes, 100), len(lifetimes),
			msP(lastLines, 50), msP(lastLines, 100), len(lastLines))
	}
	return b.String()
}

// Details lists every fault and what followed it, one line each.
func (r *Report) Details() string {
	var b strings.Builder
	for _, rec := range r.Recoveries {
		f := rec.Fault
		if f.Kind == DestroyFollowerSession {
			fmt.Fprintf(&b, "#%d %s %s of %s (the leader's token %d)", f.Seq, f.At.Format("15:04:05.000"), f.Kind, f.Target, f.Token)
		} else {
			fmt.Fprintf(&b, "#%d %s %s of %s/%d", f.Seq, f.At.Format("15:04:05.000"), f.Kind, f.Target, f.Token)
		}
		if f.Params != "" {
			fmt.Fprintf(&b, " (%s)", f.Params)
		}
		b.WriteString(": ")
		if rec.Next == nil {
			b.WriteString("leader kept")
		} else {
			fmt.Fprintf(&b, "new leader %s/%d after %s (no leader %s, bound %s)", rec.Next.ID, rec.Next.Token,
				ms(rec.Failover), ms(rec.NoLeader), ms(rec.Bound))
		}
		if f.Kind == DestroyFollowerSession {
			fmt.Fprintf(&b, "; led again later: %s", yesNo(rec.LedAgain))
		} else {
			fmt.Fprintf(&b, "; old command's last line %s after the fault", ms(rec.OldLived))
		}
		if rec.StaleLifetime >= 0 {
			fmt.Fprintf(&b, "; stale command gone %s after resume", ms(rec.StaleLifetime))
		}
		b.WriteByte('\n')
	}
	for _, o := range r.Overlaps {
		fmt.Fprintf(&b, "overlap (freeze #%d): %s\n", o.FrozenBy, o)
	}
	return b.String()
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func msP(ds []time.Duration, p float64) string {
	if len(ds) == 0 {
		return "—"
	}
	return ms(Percentile(ds, p))
}
