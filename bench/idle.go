package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/excalibur/consul-elect/consul/reference"
	"github.com/excalibur/consul-elect/messages"
)

// idleRun is one implementation holding n resources, then counted idle.
type idleRun struct {
	n           int
	acquired    int           // acquisitions that succeeded
	held        int           // held when counting started
	heldAtEnd   int           // held when counting ended
	acquireTime time.Duration // until held (all, or as many as it could)
	acquiring   Counts        // requests while acquiring
	window      Counts        // requests while idle
	failure     string        // why not all n were held
}

func (r idleRun) perMinute(window time.Duration) float64 {
	return float64(r.window.Requests) * float64(time.Minute) / float64(window)
}

// Idle is figure 4: HTTP requests per minute to Consul while 1, 100 and
// 1,000 resources are held by one process and nothing happens. Requests are
// counted by each client's transport (Meter); the window starts IdleSettle
// after the last acquisition.
func Idle(ctx context.Context, env *Env, cfg Config) Figure {
	f := Figure{Name: "Figure 4: idle cost"}
	for _, n := range cfg.IdleSizes {
		elect, err := engineIdle(ctx, env, cfg, n)
		if err != nil {
			f.Err = prefixErr(fmt.Sprintf("consul-elect, %d held", n), err)
			return f
		}
		ref, err := lockIdle(ctx, env, cfg, n)
		if err != nil {
			f.Err = prefixErr(fmt.Sprintf("api.Lock, %d held", n), err)
			return f
		}
		goal := "≤ api.Lock's"
		if n >= 1000 {
			goal = "≤ 80 req/min in total"
		}
		row := Row{Figure: "4 idle cost", Measure: fmt.Sprintf("%d held: requests/min", n), Goal: goal,
			Elect: idleValue(elect, cfg.IdleWindow), Ref: idleValue(ref, cfg.IdleWindow)}
		f.Rows = append(f.Rows, row)
		for _, r := range []struct {
			name string
			run  idleRun
		}{{"consul-elect", elect}, {"api.Lock", ref}} {
			f.notef("%s, %d asked: %d acquired in %s (%d requests, %d answered 429, %d transport errors), %d held %s later; idle %s: %d requests (%s), %d answered 429; %d still held at the end%s",
				r.name, n, r.run.acquired, r.run.acquireTime.Round(time.Millisecond), r.run.acquiring.Requests, r.run.acquiring.TooMany,
				r.run.acquiring.Failed, r.run.held, cfg.IdleSettle, cfg.IdleWindow, r.run.window.Requests, r.run.window.Breakdown(), r.run.window.TooMany,
				r.run.heldAtEnd, failureNote(r.run.failure))
		}
	}
	f.notef("session TTL %s for both; the window is short of Consul's 5-minute blocking-query timeout, which adds about 0.2 requests/min per blocking query (consul-elect: 1; api.Lock: 1 per held lock)", cfg.IdleTTL)
	return f
}

func failureNote(failure string) string {
	if failure == "" {
		return ""
	}
	return "; " + failure
}

func idleValue(r idleRun, window time.Duration) Value {
	rate := r.perMinute(window)
	if r.held < r.n {
		return Missing(fmt.Sprintf("fails: acquires %d of %d, holds %d (%.0f req/min for those)", r.acquired, r.n, r.held, rate))
	}
	return Quantity(rate, "req/min")
}

func resourceNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("r%05d", i)
	}
	return names
}

// idleLockDelay is both sides' lock-delay in figure 4: Consul's and the
// engine's default.
const idleLockDelay = 15 * time.Second

// acquireTimeout bounds how long n resources may take to be acquired.
func acquireTimeout(n int) time.Duration {
	return 30*time.Second + time.Duration(n)*20*time.Millisecond
}

func engineIdle(ctx context.Context, env *Env, cfg Config, n int) (idleRun, error) {
	run := idleRun{n: n}
	var held atomic.Int64
	// Lock-delay at its default (15s): the engine renews twice per fence
	// window, min(TTL, lock-delay), so a 1s lock-delay would cost a renewal
	// every 0.45s (the price of fencing against node failure); api.Lock
	// renews every TTL/2 whatever its lock-delay.
	c, err := startEngine(ctx, env, engineConfig{id: "elect-idle", prefix: env.prefix("idle-elect"), sessionTTL: cfg.IdleTTL,
		lockDelay: idleLockDelay, resources: resourceNames(n), onEvent: countHeld(&held)})
	if err != nil {
		return run, err
	}
	defer c.stop()
	env.logf("figure 4: consul-elect, %d resources", n)
	start := time.Now()
	if !waitUntil(ctx, acquireTimeout(n), func() bool { return held.Load() >= int64(n) }) {
		run.failure = fmt.Sprintf("only %d held after %s", held.Load(), acquireTimeout(n))
	}
	run.acquireTime = time.Since(start)
	run.acquired = int(held.Load())
	run.acquiring = c.meter.Snapshot()
	sleep(ctx, cfg.IdleSettle)
	run.held = int(held.Load())
	before := c.meter.Snapshot()
	sleep(ctx, cfg.IdleWindow)
	run.window = c.meter.Snapshot().Since(before)
	run.heldAtEnd = int(held.Load())
	return run, ctx.Err()
}

// countHeld keeps held equal to the number of resources led, from events.
func countHeld(held *atomic.Int64) func(any, time.Time) {
	return func(evt any, _ time.Time) {
		switch evt.(type) {
		case messages.LeadershipAcquired:
			held.Add(1)
		case messages.LeadershipLost:
			held.Add(-1)
		}
	}
}

func lockIdle(ctx context.Context, env *Env, cfg Config, n int) (idleRun, error) {
	run := idleRun{n: n}
	meter := NewMeter()
	client, err := reference.NewClient(reference.Config{Address: env.URL, WrapTransport: meter.Wrap})
	if err != nil {
		return run, err
	}
	defer client.Close()
	prefix := env.prefix("idle-apilock")
	env.logf("figure 4: api.Lock, %d locks, one at a time until one fails", n)
	var locks []*reference.Lock
	start := time.Now()
	for i, name := range resourceNames(n) {
		lock, err := client.NewLock(reference.LockOptions{Key: prefix + "/" + name, SessionTTL: cfg.IdleTTL, LockDelay: idleLockDelay})
		if err != nil {
			return run, err
		}
		if err := lockWithin(lock, eventTimeout); err != nil {
			run.failure = fmt.Sprintf("lock %d failed: %v", i+1, err)
			break
		}
		locks = append(locks, lock)
	}
	run.acquireTime = time.Since(start)
	run.acquired = len(locks)
	run.acquiring = meter.Snapshot()
	sleep(ctx, cfg.IdleSettle)
	run.held = client.LocksHeld()
	before := meter.Snapshot()
	sleep(ctx, cfg.IdleWindow)
	run.window = meter.Snapshot().Since(before)
	run.heldAtEnd = client.LocksHeld()
	unlockAll(locks)
	return run, ctx.Err()
}

// lockWithin takes lock or gives up after timeout (the Lock call itself
// ends when the client is closed).
func lockWithin(lock *reference.Lock, timeout time.Duration) error {
	result := make(chan error, 1)
	go func() {
		_, err := lock.Lock(nil)
		result <- err
	}()
	select {
	case err := <-result:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("Lock did not return within %s", timeout)
	}
}

// unlockAll releases every lock, a few at a time (api.Lock's Unlock is
// synchronous), within a bound.
func unlockAll(locks []*reference.Lock) {
	var wg sync.WaitGroup
	work := make(chan *reference.Lock)
	for range 8 {
		wg.Go(func() {
			for l := range work {
				_ = l.Unlock()
			}
		})
	}
	deadline := time.After(stopTimeout)
feed:
	for _, l := range locks {
		select {
		case work <- l:
		case <-deadline:
			break feed
		}
	}
	close(work)
	wg.Wait()
}

// waitUntil polls cond every 10 ms until it holds (true) or timeout passes.
func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
