package bench

import (
	"context"
	"errors"
	"fmt"

	consulelect "github.com/excalibur/consul-elect"
)

// enableFastFailover is figure 3's hook: it turns on fast failover in the
// engine's options and reports whether the engine has it. While the engine
// had no Options.FastFailover it returned false, and figure 3 reported
// consul-elect as "not yet implemented"; return false again to measure
// api.Lock's baseline alone.
//
// With it, the engine is measured exactly as api.Lock is: the leader is
// killed (Meter.Kill stops its check refreshes as a SIGKILL would), its
// check goes critical after the engine's FastFailoverTTL (default 2 s) and
// Consul invalidates the session; lock-delay 0.
func enableFastFailover(opts *consulelect.Options) bool {
	opts.FastFailover = true
	return true
}

// FastFailover is figure 3: SIGKILL of the leader → new leader, lock-delay
// 0, both at session TTL FastFailoverTTL (Consul's production minimum is
// 10 s). api.Lock can only wait for Consul to reap the session (about
// 2×TTL); consul-elect with Options.FastFailover loses the session when its
// own short TTL check goes critical.
func FastFailover(ctx context.Context, env *Env, cfg Config) Figure {
	f := Figure{Name: "Figure 3: fast failover"}
	goal := "≤ 3 s"
	measure := fmt.Sprintf("killed → new leader, L = 0, session TTL %s: worst", cfg.FastFailoverTTL)
	row := Row{Figure: "3 fast failover", Measure: measure, Goal: goal}

	var opts consulelect.Options
	if enableFastFailover(&opts) {
		elect, err := engineFailovers(ctx, env, expired, cfg.FastFailoverTTL, 0, cfg.FastFailoverSamples, func(o *consulelect.Options) {
			enableFastFailover(o)
		})
		f.Err = prefixErr("consul-elect", err)
		row.Elect = pctl(elect.total, 100)
		f.notef("consul-elect with FastFailover (check TTL: the engine's default), session TTL %s, lock-delay 0: killed → new leader %s; killed → invalidation observed %s",
			cfg.FastFailoverTTL, list(elect.total), list(elect.killToI))
	} else {
		row.Elect = Missing("not yet implemented (Options.FastFailover)")
	}

	row.Measure += fmt.Sprintf(" of %d", cfg.FastFailoverSamples)
	if cfg.FastFailoverSamples > 0 {
		ref, err := lockFailovers(ctx, env, expired, cfg.FastFailoverTTL, 0, cfg.FastFailoverSamples)
		f.Err = errors.Join(f.Err, prefixErr("api.Lock", err))
		row.Ref = pctl(ref.total, 100)
		f.notef("api.Lock at TTL %s, lock-delay %s (the least api.Lock can ask for): killed → new leader %s; killed → invalidation observed %s",
			cfg.FastFailoverTTL, "1ms", list(ref.total), list(ref.killToI))
	} else {
		row.Ref = Missing("skipped")
	}
	f.Rows = append(f.Rows, row)
	return f
}
