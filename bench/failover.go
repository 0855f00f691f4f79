package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/consul"
)

// How the leader dies in figures 2 and 3.
type death int

const (
	// destroyed: the leader's process is cut off (Meter.Kill) and an
	// operator destroys its session: invalidation is the destroy.
	destroyed death = iota
	// expired: the leader's process is cut off and nothing else happens:
	// Consul invalidates the session when its TTL runs out (it reaps at
	// about 2×TTL after the last renewal).
	expired
)

func (d death) String() string {
	if d == destroyed {
		return "session destroyed"
	}
	return "process killed, TTL expiry"
}

// failoverRun is one implementation's failover samples.
type failoverRun struct {
	excess  Sample // new leader − invalidation − lock-delay
	total   Sample // new leader − death
	killToI Sample // death → invalidation observed (expired only)
}

// Failover is figure 2: the leader dies with lock-delay L; the time from the
// invalidation of its session to the new leader, minus L.
//
// The dead leader is cut off from Consul by Meter.Kill before anything else
// happens, so it can neither release nor renew nor campaign again; for
// consul-elect that matters, since a live engine would create a new session
// and compete with the standby. The invalidation time is when the destroy
// request was sent, or, for TTL expiry, when the harness's own blocking query
// on the key saw its session cleared (that query's latency, about a
// millisecond on loopback, is not subtracted).
func Failover(ctx context.Context, env *Env, cfg Config) Figure {
	f := Figure{Name: "Figure 2: crash failover"}
	goal := "excess ≤ 250 ms"
	for _, how := range []death{destroyed, expired} {
		elect, errE := engineFailovers(ctx, env, how, cfg.FailoverTTL, cfg.LockDelay, cfg.FailoverSamples, nil)
		ref, errR := lockFailovers(ctx, env, how, cfg.FailoverTTL, cfg.LockDelay, cfg.FailoverSamples)
		f.Err = errors.Join(f.Err, prefixErr("consul-elect, "+how.String(), errE), prefixErr("api.Lock, "+how.String(), errR))
		measure := fmt.Sprintf("%s: to new leader − L, median (n = %d / %d)", how, len(elect.excess), len(ref.excess))
		f.Rows = append(f.Rows,
			Row{Figure: "2 failover", Measure: measure, Elect: pctl(elect.excess, 50), Ref: pctl(ref.excess, 50), Goal: goal},
			Row{Figure: "2 failover", Measure: how.String() + ": max", Elect: pctl(elect.excess, 100), Ref: pctl(ref.excess, 100), Goal: goal},
		)
		if how == expired {
			f.notef("%s: death → invalidation observed: consul-elect %s, api.Lock %s (TTL %s; Consul reaps between TTL and 2×TTL)",
				how, list(elect.killToI), list(ref.killToI), cfg.FailoverTTL)
		}
		f.notef("%s: death → new leader: consul-elect %s, api.Lock %s", how, list(elect.total), list(ref.total))
	}
	f.notef("L = %s, session TTL %s; the standby was waiting (engine: had seen the leader; api.Lock: in its blocking query) before each death; api.Lock retries every %s during lock-delay",
		cfg.LockDelay, cfg.FailoverTTL, lockRetryTime)
	return f
}

// lockRetryTime is api.Lock's DefaultLockRetryTime (the api package cannot
// be imported here).
const lockRetryTime = 5 * time.Second

func prefixErr(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

func list(s Sample) string {
	if len(s) == 0 {
		return "none"
	}
	out := ""
	for i, d := range s {
		if i > 0 {
			out += ", "
		}
		out += d.Round(time.Millisecond).String()
	}
	return out
}

// deathTimeout bounds one failover: the TTL runs out by 2×TTL, lock-delay,
// api.Lock's 5 s retry, and slack.
func deathTimeout(ttl, lockDelay time.Duration) time.Duration {
	return 2*ttl + lockDelay + lockRetryTime + 10*time.Second
}

// engineFailovers runs consul-elect failovers; configure, when set, adjusts
// the options of every candidate (figure 3's hook).
func engineFailovers(ctx context.Context, env *Env, how death, ttl, lockDelay time.Duration, samples int,
	configure func(*consulelect.Options)) (failoverRun, error) {
	const resource = "failover"
	var run failoverRun
	if samples <= 0 {
		return run, nil
	}
	prefix := env.prefix("failover-elect")
	start := func() (*engineCandidate, error) {
		return startEngine(ctx, env, engineConfig{id: env.candidateID("elect-failover"), prefix: prefix, sessionTTL: ttl, lockDelay: lockDelay, configure: configure})
	}
	leader, err := start()
	if err != nil {
		return run, err
	}
	defer func() { leader.stop() }()
	if err := leader.e.Campaign(resource, nil); err != nil {
		return run, err
	}
	won, _, err := leader.awaitAcquired(ctx, resource)
	if err != nil {
		return run, err
	}
	session := won.Session
	env.logf("figure 2: consul-elect, %s, %d samples", how, samples)
	for i := 0; i < samples; i++ {
		standby, err := start()
		if err != nil {
			return run, err
		}
		if err := standby.e.Campaign(resource, nil); err != nil {
			standby.stop()
			return run, err
		}
		if err := standby.awaitLeader(ctx, resource, leader.id); err != nil {
			standby.stop()
			return run, err
		}
		// The standby asks Consul for the holder's lock-delay when it first
		// sees it; a standby of any age has had that time.
		time.Sleep(100 * time.Millisecond)

		invalidated, dead, err := kill(ctx, env, how, leader.meter.Kill, prefix+"/"+resource, session)
		if err != nil {
			standby.stop()
			return run, err
		}
		won, at, err := standby.awaitAcquiredWithin(ctx, resource, deathTimeout(ttl, lockDelay))
		if err != nil {
			standby.stop()
			return run, fmt.Errorf("sample %d: %w", i, err)
		}
		inv := <-invalidated
		if inv.err != nil {
			standby.stop()
			return run, inv.err
		}
		run.add(how, dead, inv.at, at, lockDelay)
		leader.stop()
		leader, session = standby, won.Session
	}
	return run, nil
}

func heldBy(entries []consul.Entry, key, session string) bool {
	for _, e := range entries {
		if e.Key == key {
			return e.Session == session
		}
	}
	return false
}

// holder is the session holding key among entries, "" if none.
func holder(entries []consul.Entry, key string) string {
	for _, e := range entries {
		if e.Key == key {
			return e.Session
		}
	}
	return ""
}

func (r *failoverRun) add(how death, dead, invalidated, newLeader time.Time, lockDelay time.Duration) {
	r.excess = append(r.excess, newLeader.Sub(invalidated)-lockDelay)
	r.total = append(r.total, newLeader.Sub(dead))
	if how == expired {
		r.killToI = append(r.killToI, invalidated.Sub(dead))
	}
}

type invalidation struct {
	at  time.Time
	err error
}

// kill cuts the leader off and, for destroyed, destroys its session. It
// returns when the leader died and a channel that yields when its session
// was invalidated.
func kill(ctx context.Context, env *Env, how death, cutOff func(), key, session string) (<-chan invalidation, time.Time, error) {
	out := make(chan invalidation, 1)
	if how == destroyed {
		cutOff()
		dead := time.Now()
		dctx, cancel := context.WithTimeout(ctx, eventTimeout)
		defer cancel()
		if err := env.Operator.DestroySession(dctx, session); err != nil {
			return nil, dead, err
		}
		out <- invalidation{at: dead}
		return out, dead, nil
	}
	// Start watching before the death, so that the watch is already a
	// blocking query when the session goes.
	entries, index, err := env.Operator.ListPrefix(ctx, key, 0, 0)
	if err != nil {
		return nil, time.Time{}, err
	}
	if !heldBy(entries, key, session) {
		return nil, time.Time{}, fmt.Errorf("%s is not held by %s before the kill", key, session)
	}
	cutOff()
	dead := time.Now()
	go func() {
		wctx, cancel := context.WithTimeout(ctx, deathTimeout(time.Minute, 0))
		defer cancel()
		for {
			entries, next, err := env.Operator.ListPrefix(wctx, key, index, time.Minute)
			if err != nil {
				out <- invalidation{err: fmt.Errorf("watching %s: %w", key, err)}
				return
			}
			if !heldBy(entries, key, session) {
				out <- invalidation{at: time.Now()}
				return
			}
			index = next
		}
	}()
	return out, dead, nil
}

func lockFailovers(ctx context.Context, env *Env, how death, ttl, lockDelay time.Duration, samples int) (failoverRun, error) {
	var run failoverRun
	if samples <= 0 {
		return run, nil
	}
	key := env.prefix("failover-apilock") + "/failover"
	leader, err := newLockCandidate(env, key, ttl, lockDelay)
	if err != nil {
		return run, err
	}
	defer func() { leader.close() }()
	if err := leader.lockNow(eventTimeout); err != nil {
		return run, err
	}
	env.logf("figure 2/3: api.Lock, %s, TTL %s, %d samples", how, ttl, samples)
	for i := 0; i < samples; i++ {
		standby, err := newLockCandidate(env, key, ttl, lockDelay)
		if err != nil {
			return run, err
		}
		waiting := standby.lockAsync()
		if err := standby.awaitStandby(ctx); err != nil {
			standby.close()
			return run, err
		}
		rctx, cancel := context.WithTimeout(ctx, eventTimeout)
		entries, _, err := env.Operator.ListPrefix(rctx, key, 0, 0)
		cancel()
		if err != nil {
			standby.close()
			return run, err
		}
		invalidated, dead, err := kill(ctx, env, how, leader.meter.Kill, key, holder(entries, key))
		if err != nil {
			standby.close()
			return run, err
		}
		at, err := standby.awaitLock(waiting, deathTimeout(ttl, lockDelay))
		if err != nil {
			standby.close()
			return run, fmt.Errorf("sample %d: %w", i, err)
		}
		inv := <-invalidated
		if inv.err != nil {
			standby.close()
			return run, inv.err
		}
		run.add(how, dead, inv.at, at, lockDelay)
		leader.close()
		leader = standby
	}
	return run, nil
}
