package bench

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// report turns what the fleet measured into figure 7's rows and notes.
func (f *fleet) report(res *fleetResult) ([]Row, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cfg := f.cfg
	var notes []string
	notef := func(format string, args ...any) { notes = append(notes, fmt.Sprintf(format, args...)) }
	label := fmt.Sprintf("%d×%d", cfg.FleetProcesses, cfg.FleetResources)
	row := func(measure string, v Value, goal string) Row {
		return Row{Figure: "7 fleet", Measure: label + ": " + measure, Elect: v, Ref: Missing("—"), Goal: goal}
	}
	var rows []Row

	// Per phase, per process.
	type procPhase struct {
		p *fleetProc
		c *fleetCounts
	}
	var perPhase [phaseCount][]procPhase
	for phase := range phaseCount {
		for _, p := range f.procs {
			if c := f.phaseCounts(p, phase); c != nil {
				perPhase[phase] = append(perPhase[phase], procPhase{p, c})
			}
		}
	}

	// 1. Cold start.
	var all Value
	switch {
	case res.allHeldIn > 0:
		all = Seconds(res.allHeldIn)
	case res.spawnAt.IsZero():
		all = Missing("not run")
	default:
		all = Missing(fmt.Sprintf("not all held: %d of %d within %s", res.heldAtBound, cfg.FleetResources, res.coldDeadline))
	}
	rows = append(rows, row("cold start: time until all held", all, "≤ 2 s"))
	if len(f.allShares) > 0 {
		most := slices.Max(f.allShares)
		rows = append(rows, row("cold start: max share of one candidate", Quantity(100*float64(most)/float64(cfg.FleetResources), "%").
			With(fmt.Sprintf("%d of %d; fair 1/P = %.0f%%", most, cfg.FleetResources, 100/float64(cfg.FleetProcesses))), ""))
		notef("cold start: keys per candidate when all were first held: %v", f.allShares)
	}
	if res.idleWindow > 0 {
		notef("largest share of one candidate as a phase ended (fair: %d): cold start and settle %d, idle %d, churn %d, rolling restart %d",
			(cfg.FleetResources+cfg.FleetProcesses-1)/cfg.FleetProcesses, f.mostAtEnd[phaseCold], f.mostAtEnd[phaseIdle],
			f.mostAtEnd[phaseChurn], f.mostAtEnd[phaseRolling])
	}
	readyIn := make([]string, len(res.readyIn))
	for i, d := range res.readyIn {
		readyIn[i] = d.Round(time.Millisecond).String()
	}
	since := func(at int64) time.Duration {
		if at == 0 {
			return 0
		}
		return time.Duration(at - res.spawnAt.UnixNano()).Round(time.Millisecond)
	}
	notef("cold start: from spawning the %d processes together; Start returned after %s; first key held after %s, half after %s, all after %s (by the At of the acquisition that completed the set); agent CPU %.0f%% of a core over the cold start and the %s settle",
		cfg.FleetProcesses, strings.Join(readyIn, ", "), since(f.firstHeldAt), since(f.halfHeldAt), all, res.coldCPU, cfg.FleetSettle)
	for _, pp := range perPhase[phaseCold] {
		notef("cold start, %s: %d requests (%s), %.1f MB read, %d answered 429, %d transport errors, %d ElectionError, peak %d in flight, CPU %s",
			pp.p.id, pp.c.HTTP.Requests, pp.c.HTTP.Breakdown(), float64(pp.c.HTTP.BytesIn)/(1<<20), pp.c.HTTP.TooMany, pp.c.HTTP.Failed,
			pp.c.Errors, pp.c.PeakInFlight, pp.c.CPU.Round(10*time.Millisecond))
	}

	// 2. Idle.
	if res.idleWindow > 0 {
		var rates []float64
		for _, pp := range perPhase[phaseIdle] {
			rate := float64(pp.c.HTTP.Requests) * float64(time.Minute) / float64(res.idleWindow)
			rates = append(rates, rate)
			notef("idle, %s: %.1f requests/min (%s), %.0f B/s read, CPU %.1f%% of a core",
				pp.p.id, rate, pp.c.HTTP.Breakdown(), float64(pp.c.HTTP.BytesIn)/res.idleWindow.Seconds(), 100*pp.c.CPU.Seconds()/res.idleWindow.Seconds())
		}
		if len(rates) > 0 {
			rows = append(rows, row("idle: requests/min per candidate (most)", Quantity(slices.Max(rates), "req/min").
				With(fmt.Sprintf("mean %.1f", mean(rates))), ""))
		}
		notef("idle: %s window after the settle; agent CPU %.1f%% of a core", res.idleWindow.Round(time.Second), res.idleCPU)
	}

	// 3. Churn.
	if len(res.releases) > 0 {
		var takeover, heard, heardAfterNew Sample
		var unlockRTT Sample
		reacquired, notTaken, notHeard := 0, 0, 0
		for _, r := range res.releases {
			unlockRTT = append(unlockRTT, r.took)
			next, ok := f.nextAcquired(r.resource, r.at, -1)
			if !ok {
				notTaken++
				continue
			}
			takeover = append(takeover, time.Duration(next.at-r.at))
			if r.holder < 0 {
				continue
			}
			if next.proc == r.holder {
				reacquired++
			}
			lost, ok := f.nextLost(r.resource, r.at, r.holder)
			if !ok {
				notHeard++
				continue
			}
			heard = append(heard, time.Duration(lost.at-r.at))
			heardAfterNew = append(heardAfterNew, time.Duration(lost.at-next.at))
		}
		rows = append(rows,
			row(fmt.Sprintf("churn (%d releases/s): takeover after a release, p50", cfg.FleetRate), pctl(takeover, 50), ""),
			row("churn: takeover after a release, p99", pctl(takeover, 99), "≤ 50 ms"))
		worst := Missing("no sample")
		if len(heardAfterNew) > 0 {
			worst = Millis(heardAfterNew.Max()).With("positive: after")
		}
		rows = append(rows, row("churn: old holder's LeadershipLost − new leader's LeadershipAcquired, worst", worst, "≤ 100 ms"))
		window := res.churnWindow.Seconds()
		notef("churn: %d releases in %s (%.1f/s; %d picks skipped: key free or moved); the unlock transaction took p50 %s, p99 %s; latencies are from sending it",
			len(res.releases), res.churnWindow.Round(time.Millisecond), float64(len(res.releases))/window, res.skipped,
			us10(unlockRTT.Percentile(50)), us10(unlockRTT.Percentile(99)))
		notef("churn: takeover p50 %s, p99 %s, max %s; %d taken back by the old holder, %d not taken within %s",
			us10(takeover.Percentile(50)), us10(takeover.Percentile(99)),
			us10(takeover.Max()), reacquired, notTaken, cfg.FleetTimeout)
		notef("churn: old holder's LeadershipLost after the release p50 %s, p99 %s, max %s; minus the new leader's LeadershipAcquired p50 %s, p99 %s, max %s; %d old holders never heard",
			us10(heard.Percentile(50)), us10(heard.Percentile(99)), us10(heard.Max()),
			us10(heardAfterNew.Percentile(50)), us10(heardAfterNew.Percentile(99)), us10(heardAfterNew.Max()), notHeard)
		cpu := Missing(fmt.Sprint("agent pid unknown: ", res.cpuErr))
		if res.cpuErr == nil {
			cpu = Quantity(res.churnCPU, "% of a core")
		}
		rows = append(rows, row(fmt.Sprintf("churn: agent CPU at %d releases/s", cfg.FleetRate), cpu, "≤ 15%"))
		// Changes under the prefix: each release, and each acquisition.
		changes := int64(len(res.releases))
		for _, e := range f.events {
			if e.acquired && f.phaseAt(e.at) == phaseChurn {
				changes++
			}
		}
		var perSecond []float64
		var bytesIn int64
		for _, pp := range perPhase[phaseChurn] {
			perSecond = append(perSecond, float64(pp.c.HTTP.BytesIn)/window)
			bytesIn += pp.c.HTTP.BytesIn
			notef("churn, %s: %.0f KB/s read, %.0f B per change, %d requests (%s), %d answered 429, CPU %.1f%% of a core",
				pp.p.id, float64(pp.c.HTTP.BytesIn)/window/1000, float64(pp.c.HTTP.BytesIn)/float64(changes),
				pp.c.HTTP.Requests, pp.c.HTTP.Breakdown(), pp.c.HTTP.TooMany, 100*pp.c.CPU.Seconds()/window)
		}
		if len(perSecond) > 0 {
			perChange := float64(bytesIn) / float64(len(perPhase[phaseChurn])) / float64(changes)
			rows = append(rows, row("churn: bytes read per candidate", Quantity(slices.Max(perSecond)/1000, "KB/s").
				With(fmt.Sprintf("most; %.0f B per change, floor ~%d B", perChange, res.entryBytes)), "floor: one entry per change"))
		}
		notef("churn: %d changes under the prefix (releases and acquisitions); bytes are read from the churn's start until %s after the last takeover, per second of the churn; the floor is one entry as GET /v1/kv/<key> answers it (%d B)",
			changes, cfg.FleetSettle, res.entryBytes)
	}

	// 4. Rolling restart.
	if len(res.restarts) > 0 {
		var worst time.Duration
		complete := true
		for _, s := range res.restarts {
			p := f.live[s.slot]
			taken := fmt.Sprintf("%s (half of them after %s)", s.takenIn.Round(time.Millisecond), s.taken.Percentile(50).Round(time.Millisecond))
			switch {
			case len(s.keys) == 0:
				taken = "nothing to take over"
			case s.missing > 0:
				taken = fmt.Sprintf("%d of its keys not taken within %s", s.missing, cfg.FleetTimeout)
				complete = false
			}
			worst = max(worst, s.takenIn)
			notef("rolling restart, slot %d: held %d; held by others %s after SIGTERM; its Stop took %s, the process was gone after %s; restarted as %s, whose Start took %s",
				s.slot, len(s.keys), taken, s.stopTook.Round(time.Millisecond), s.exitIn.Round(time.Millisecond), p.id, s.startIn.Round(time.Millisecond))
		}
		v := Seconds(worst)
		if !complete {
			v = v.With("not all taken over")
		}
		rows = append(rows, row("rolling restart: SIGTERM → all its keys held by others, worst", v, "≤ 1 s per candidate"))
	}
	if res.stopIn > 0 {
		notef("stop: SIGTERM to every candidate at once; all gone after %s", res.stopIn.Round(time.Millisecond))
	}
	for _, p := range f.procs {
		if s := p.stopped; s != nil && s.Before != nil && s.Counts != nil {
			d := s.Counts.HTTP.Since(s.Before.HTTP)
			stopErr := ""
			if s.Err != "" {
				stopErr = "; error: " + s.Err
			}
			notef("Stop of %s (in the %s): %s, %d requests (%s), %d answered 429, %d transport errors%s",
				p.id, phaseNames[p.died], time.Duration(s.Took).Round(time.Millisecond), d.Requests, d.Breakdown(), d.TooMany, d.Failed, stopErr)
		}
	}

	// 5. Peaks and 429s.
	var tooMany, refused int64
	var byPhase []string
	var peakLines []string
	var peakInFlight int64
	for phase := range phaseCount {
		var n, sumPeaks, most int64
		for _, pp := range perPhase[phase] {
			n += pp.c.HTTP.TooMany
			refused += pp.c.Refused
			sumPeaks += pp.c.PeakInFlight
			most = max(most, pp.c.PeakInFlight)
		}
		tooMany += n
		peakInFlight = max(peakInFlight, most)
		byPhase = append(byPhase, fmt.Sprintf("%s %d", phaseNames[phase], n))
		peakLines = append(peakLines, fmt.Sprintf("%s %d (sum of the candidates' peaks %d)", phaseNames[phase], most, sumPeaks))
	}
	rows = append(rows, row("HTTP 429 answers, every phase", Quantity(float64(tooMany), "").With(strings.Join(byPhase, ", ")), "0 in any phase"))
	if refused > 0 {
		notef("besides the answers 429 to requests, %d came on idle connections before any request (the agent refusing connections; net/http logs them as \"Unsolicited response received on idle HTTP channel\", the candidates count them instead)", refused)
	}
	rows = append(rows, row("requests in flight, most of one candidate", Quantity(float64(peakInFlight), "").
		With("the agent allows 200 connections per client IP, for every process on the host"), ""))
	notef("requests in flight (blocking queries included), most of one candidate by phase: %s", strings.Join(peakLines, "; "))
	var rss []string
	var peakRSS int64
	for _, p := range f.procs {
		hwm := int64(0)
		if p.stopped != nil && p.stopped.Counts != nil {
			hwm = p.stopped.Counts.PeakRSS
		}
		for _, m := range p.marks {
			hwm = max(hwm, m.PeakRSS)
		}
		peakRSS = max(peakRSS, hwm)
		rss = append(rss, fmt.Sprintf("%s %.0f MB", p.id, float64(hwm)/(1<<20)))
	}
	rows = append(rows, row("peak RSS of one candidate (VmHWM)", Quantity(float64(peakRSS)/(1<<20), "MB"), "≤ 96 MB"))
	notef("peak RSS (VmHWM) per process: %s", strings.Join(rss, ", "))

	var reasons [phaseCount]map[string]int
	for _, e := range f.events {
		if !e.acquired {
			phase := f.phaseAt(e.at)
			if reasons[phase] == nil {
				reasons[phase] = map[string]int{}
			}
			reasons[phase][e.why]++
		}
	}
	var lostLines []string
	for phase, byWhy := range reasons {
		whys := make([]string, 0, len(byWhy))
		for why, n := range byWhy {
			whys = append(whys, fmt.Sprintf("%s %d", why, n))
		}
		slices.Sort(whys)
		if len(whys) > 0 {
			lostLines = append(lostLines, phaseNames[phase]+": "+strings.Join(whys, ", "))
		}
	}
	notef("LeadershipLost by reason: %s", strings.Join(lostLines, "; "))

	// Overlapping terms.
	overlaps, worstOverlap, unpaired := f.overlaps()
	total := 0
	var overlapPhases []string
	for phase, n := range overlaps {
		total += n
		overlapPhases = append(overlapPhases, fmt.Sprintf("%s %d", phaseNames[phase], n))
	}
	ov := Quantity(float64(total), "")
	if total > 0 {
		ov = ov.With(fmt.Sprintf("%d in the churn, %d elsewhere; longest %s", overlaps[phaseChurn], total-overlaps[phaseChurn], us10(worstOverlap)))
	}
	rows = append(rows, row("overlapping terms (by the events' At)", ov, "0"))
	notef("overlapping terms: a term (LeadershipAcquired → LeadershipLost of one process) that began before another process's term of the resource had ended, by the phase it began in: %s; %d events without their pair",
		strings.Join(overlapPhases, ", "), unpaired)

	var errorCounts []string
	var errorsTotal int64
	for _, p := range f.procs {
		var n int64
		for phase := range phaseCount {
			if c := f.phaseCounts(p, phase); c != nil {
				n += c.Errors
			}
		}
		errorsTotal += n
		errorCounts = append(errorCounts, fmt.Sprintf("%s %d", p.id, n))
	}
	if errorsTotal > 0 {
		msgs := make([]string, 0, len(f.errors))
		for msg := range f.errors {
			msgs = append(msgs, msg)
		}
		slices.SortFunc(msgs, func(a, b string) int { return cmp.Or(cmp.Compare(f.errors[b], f.errors[a]), cmp.Compare(a, b)) })
		for i, msg := range msgs {
			msgs[i] = fmt.Sprintf("%q ×%d", msg, f.errors[msg])
		}
		notef("ElectionError events: %d (%s); the first %d of each process, alike ones together: %s",
			errorsTotal, strings.Join(errorCounts, ", "), fleetErrorLines, strings.Join(msgs, "; "))
	}
	notef("candidates: consulelect.Start with DefaultOptions()%s, KeyPrefix %s, Options.Resources = the %d resources, Options.Backend = a consul.Client from Options.ConsulConfig() with the counting transport (bench.Meter); each is its own OS process (%d spawned in all)",
		optionsNote(cfg.FleetOptions), f.prefix, cfg.FleetResources, len(f.procs))
	return rows, notes
}

func optionsNote(options string) string {
	if options == "" {
		return ""
	}
	return " and " + options
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// us10 rounds a duration for a note.
func us10(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
