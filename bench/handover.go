package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/excalibur/consul-elect/messages"
)

// holdOffForever keeps a resigned engine candidate from campaigning until
// the harness lets it (Resign again with holdOffNone), so that it can never
// race the standby back to the key: the figure measures the handover only.
const (
	holdOffForever = time.Hour
	holdOffNone    = time.Nanosecond // a Resign with 0 would leave the hour's timer running
)

// Handover is figure 1: the leader resigns, the standby takes over. Both
// candidates are in this process, each with its own session and HTTP
// client; the standby is waiting (engine: has seen the leader; api.Lock: its
// Lock is in its blocking query) before each handover starts.
func Handover(ctx context.Context, env *Env, cfg Config) Figure {
	f := Figure{Name: "Figure 1: graceful handover"}
	elect, electCounts, steps, err := engineHandovers(ctx, env, cfg)
	if err != nil {
		f.Err = fmt.Errorf("consul-elect: %w", err)
	}
	ref, refCounts, err := lockHandovers(ctx, env, cfg)
	if err != nil && f.Err == nil {
		f.Err = fmt.Errorf("api.Lock: %w", err)
	}
	goal := "≤ api.Lock's"
	f.Rows = append(f.Rows,
		Row{Figure: "1 handover", Measure: fmt.Sprintf("p50 (n = %d / %d)", len(elect), len(ref)), Elect: pctl(elect, 50), Ref: pctl(ref, 50), Goal: goal},
		Row{Figure: "1 handover", Measure: "p99", Elect: pctl(elect, 99), Ref: pctl(ref, 99), Goal: goal + "; ≤ 20 ms"},
	)
	f.notef("consul-elect: from Resign(resource, …) to the standby's LeadershipAcquired read from Events(); min %s, max %s over %d",
		elect.Min(), elect.Max(), len(elect))
	f.notef("api.Lock: from Unlock() to the standby's Lock() returning (each Lock creates a session: api.Lock's default); min %s, max %s over %d",
		ref.Min(), ref.Max(), len(ref))
	perHandover := func(c Counts, n int) string {
		if n == 0 {
			return "none"
		}
		return fmt.Sprintf("%.1f requests per handover, both candidates (%s over %d)", float64(c.Requests)/float64(n), c.Breakdown(), n)
	}
	f.notef("consul-elect: %s", perHandover(electCounts, len(elect)))
	freeSeen := fmt.Sprintf("the key was handed to the standby in the release's write in %d of %d handovers", len(elect)-len(steps.freeSeen), len(elect))
	if len(steps.freeSeen) > 0 {
		freeSeen += fmt.Sprintf("; in the others, the standby saw it free after %s / %s", steps.freeSeen.Percentile(50), steps.freeSeen.Percentile(99))
	}
	f.notef("consul-elect, where the time goes (p50 / p99 from Resign): %s; standby publishes LeadershipAcquired %s / %s; then read from Events() after %s / %s more",
		freeSeen, steps.published.Percentile(50), steps.published.Percentile(99), steps.read.Percentile(50), steps.read.Percentile(99))
	f.notef("api.Lock: %s", perHandover(refCounts, len(ref)))
	return f
}

func pctl(s Sample, p float64) Value {
	if len(s) == 0 {
		return Missing("no sample")
	}
	return Millis(s.Percentile(p))
}

// handoverSteps splits consul-elect's handovers, from the Resign call: until
// the standby publishes a LeaderChanged to nobody (it saw the key free: the
// release and its blocking query; none when the release handed the key
// over), until it published LeadershipAcquired, and from there until the
// harness read it from Events.
type handoverSteps struct {
	freeSeen, published, read Sample
}

// engineHandovers returns the measured handovers, the requests both
// candidates sent during them and where the time went.
func engineHandovers(ctx context.Context, env *Env, cfg Config) (sample Sample, counts Counts, breakdown handoverSteps, err error) {
	const resource = "handover"
	prefix := env.prefix("handover-elect")
	start := func(id string) (*engineCandidate, error) {
		return startEngine(ctx, env, engineConfig{id: id, prefix: prefix, sessionTTL: cfg.HandoverTTL, lockDelay: cfg.LockDelay})
	}
	a, err := start(env.candidateID("elect-a"))
	if err != nil {
		return nil, counts, breakdown, err
	}
	defer a.stop()
	b, err := start(env.candidateID("elect-b"))
	if err != nil {
		return nil, counts, breakdown, err
	}
	defer b.stop()
	if err := a.e.Campaign(resource, nil); err != nil {
		return nil, counts, breakdown, err
	}
	if _, _, err := a.awaitAcquired(ctx, resource); err != nil {
		return nil, counts, breakdown, err
	}
	if err := b.e.Campaign(resource, nil); err != nil {
		return nil, counts, breakdown, err
	}
	if err := b.awaitLeader(ctx, resource, a.id); err != nil {
		return nil, counts, breakdown, err
	}
	env.logf("figure 1: consul-elect, %d handovers", cfg.WarmupHandovers+cfg.Handovers)

	if cfg.WarmupHandovers == 0 {
		counts = a.meter.Snapshot().Plus(b.meter.Snapshot())
	}
	leader, standby := a, b
	for i := 0; i < cfg.WarmupHandovers+cfg.Handovers; i++ {
		if err := ctx.Err(); err != nil {
			return sample, counts, breakdown, err
		}
		t0 := time.Now()
		if err := leader.e.Resign(resource, holdOffForever); err != nil {
			return sample, counts, breakdown, err
		}
		var freeSeen time.Time
		s, err := standby.await(ctx, eventTimeout, "LeadershipAcquired of "+resource, func(evt any) bool {
			switch e := evt.(type) {
			case messages.LeaderChanged:
				if e.Resource == resource && e.LeaderID == "" && freeSeen.IsZero() {
					freeSeen = time.Now()
				}
			case messages.LeadershipAcquired:
				return e.Resource == resource
			}
			return false
		})
		if err != nil {
			return sample, counts, breakdown, fmt.Errorf("handover %d: %w", i, err)
		}
		if i >= cfg.WarmupHandovers {
			sample = append(sample, s.at.Sub(t0))
			published := s.evt.(messages.LeadershipAcquired).At
			breakdown.published = append(breakdown.published, published.Sub(t0))
			breakdown.read = append(breakdown.read, s.at.Sub(published))
			if !freeSeen.IsZero() {
				breakdown.freeSeen = append(breakdown.freeSeen, freeSeen.Sub(t0))
			}
		}
		if i+1 == cfg.WarmupHandovers {
			counts = a.meter.Snapshot().Plus(b.meter.Snapshot())
		}
		// The old leader becomes the standby: it sees the new leader, then
		// may campaign again.
		if err := leader.awaitLeader(ctx, resource, standby.id); err != nil {
			return sample, counts, breakdown, fmt.Errorf("handover %d: %w", i, err)
		}
		if err := leader.e.Resign(resource, holdOffNone); err != nil {
			return sample, counts, breakdown, err
		}
		leader, standby = standby, leader
	}
	counts = a.meter.Snapshot().Plus(b.meter.Snapshot()).Since(counts)
	return sample, counts, breakdown, nil
}

// lockHandovers returns the measured handovers and the requests both
// candidates sent during them.
func lockHandovers(ctx context.Context, env *Env, cfg Config) (sample Sample, counts Counts, err error) {
	key := env.prefix("handover-apilock") + "/handover"
	a, err := newLockCandidate(env, key, cfg.HandoverTTL, cfg.LockDelay)
	if err != nil {
		return nil, counts, err
	}
	defer a.close()
	b, err := newLockCandidate(env, key, cfg.HandoverTTL, cfg.LockDelay)
	if err != nil {
		return nil, counts, err
	}
	defer b.close()
	if err := a.lockNow(eventTimeout); err != nil {
		return nil, counts, err
	}
	waiting := b.lockAsync()
	if err := b.awaitStandby(ctx); err != nil {
		return nil, counts, err
	}
	env.logf("figure 1: api.Lock, %d handovers", cfg.WarmupHandovers+cfg.Handovers)

	if cfg.WarmupHandovers == 0 {
		counts = a.meter.Snapshot().Plus(b.meter.Snapshot())
	}
	leader, standby := a, b
	for i := 0; i < cfg.WarmupHandovers+cfg.Handovers; i++ {
		if err := ctx.Err(); err != nil {
			return sample, counts, err
		}
		t0 := time.Now()
		if err := leader.lock.Unlock(); err != nil {
			return sample, counts, fmt.Errorf("handover %d: Unlock: %w", i, err)
		}
		at, err := standby.awaitLock(waiting, eventTimeout)
		if err != nil {
			return sample, counts, fmt.Errorf("handover %d: %w", i, err)
		}
		if i >= cfg.WarmupHandovers {
			sample = append(sample, at.Sub(t0))
		}
		if i+1 == cfg.WarmupHandovers {
			counts = a.meter.Snapshot().Plus(b.meter.Snapshot())
		}
		// The old leader becomes the standby once its monitor has seen the
		// release, so that its next blocking query is its Lock's.
		if err := leader.awaitReleased(eventTimeout); err != nil {
			return sample, counts, err
		}
		waiting = leader.lockAsync()
		if err := leader.awaitStandby(ctx); err != nil {
			return sample, counts, fmt.Errorf("handover %d: %w", i, err)
		}
		leader, standby = standby, leader
	}
	counts = a.meter.Snapshot().Plus(b.meter.Snapshot()).Since(counts)
	// The standby's Lock is still waiting; closing its client ends it.
	return sample, counts, nil
}
