package bench

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
)

// ScaleResult is what figure 5 measured, in the process that ran it.
type ScaleResult struct {
	Resources      int
	Held           int           // held when the figure ended
	FirstHeldAfter time.Duration // the first acquisition
	HalfHeldAfter  time.Duration // half of them
	AllHeldAfter   time.Duration // 0 when not all were held in time
	Elapsed        time.Duration
	PeakRSSBytes   int64 // VmHWM of the process
	// Peaks of the Go runtime's own accounting, sampled every 50 ms: what
	// the RSS is made of.
	PeakStackBytes int64 // goroutine stacks
	PeakHeapBytes  int64 // live and not yet swept heap objects
	PeakLiveBytes  int64 // the heap the last GC found live: GOGC sets the next peak from it
	PeakGoroutines int
	Goroutines     int // once all were held (or at the timeout)
	Requests       int64
	RequestsByOp   string // Counts.Breakdown
	BytesIn        int64  // response bytes read while acquiring
	TooMany        int64  // answers 429
	Failed         int64  // transport errors
	ElectionErrors int64  // ElectionError events
	// One read of the whole prefix, as the key watcher does on every change.
	ListEntries  int
	ListDuration time.Duration
	ListBytes    int64
	StopDuration time.Duration
	StopErr      string
}

// Scale is figure 5 run in this process: one engine campaigns for n
// resources (Options.Resources) on a fresh prefix; it reports how long until
// all are held (bounded by timeout), the process's peak RSS and goroutines,
// and what one read of the whole prefix costs. For a clean RSS run it in a
// process of its own (electbench does).
func Scale(ctx context.Context, env *Env, n int, timeout time.Duration) (ScaleResult, error) {
	res := ScaleResult{Resources: n}
	var held, errs atomic.Int64
	var first, half atomic.Int64 // nanoseconds after start
	var start time.Time
	onEvent := func(evt any, at time.Time) {
		switch evt.(type) {
		case messages.LeadershipAcquired:
			switch held.Add(1) {
			case 1:
				first.Store(int64(at.Sub(start)))
			case int64(max(n/2, 1)):
				half.Store(int64(at.Sub(start)))
			}
		case messages.LeadershipLost:
			held.Add(-1)
		case messages.ElectionError:
			errs.Add(1)
		}
	}
	var peak, peakStack, peakHeap, peakLive atomic.Int64
	sampleDone := make(chan struct{})
	sampling := make(chan struct{})
	go func() {
		defer close(sampleDone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		samples := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
		for {
			if g := int64(runtime.NumGoroutine()); g > peak.Load() {
				peak.Store(g)
			}
			metrics.Read(samples)
			if v := int64(samples[0].Value.Uint64()); v > peakStack.Load() {
				peakStack.Store(v)
			}
			if v := int64(samples[1].Value.Uint64()); v > peakHeap.Load() {
				peakHeap.Store(v)
			}
			if v := int64(samples[2].Value.Uint64()); v > peakLive.Load() {
				peakLive.Store(v)
			}
			select {
			case <-sampling:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() {
		close(sampling)
		<-sampleDone
	}()

	prefix := env.prefix("scale-elect")
	names := resourceNames(n)
	start = time.Now()
	c, err := startEngine(ctx, env, engineConfig{id: "elect-scale", prefix: prefix, sessionTTL: 15 * time.Second,
		lockDelay: time.Second, resources: names, onEvent: onEvent})
	if err != nil {
		return res, err
	}
	env.logf("figure 5: consul-elect, %d resources (at most %s)", n, timeout)
	progress := time.Now()
	all := waitUntil(ctx, timeout, func() bool {
		if time.Since(progress) > 10*time.Second {
			progress = time.Now()
			env.logf("figure 5: %d of %d held after %s", held.Load(), n, time.Since(start).Round(time.Second))
		}
		return held.Load() >= int64(n)
	})
	res.Elapsed = time.Since(start)
	if all {
		res.AllHeldAfter = res.Elapsed
	}
	res.Held = int(held.Load())
	if all && env.AllHeld != nil {
		env.AllHeld()
	}
	res.FirstHeldAfter, res.HalfHeldAfter = time.Duration(first.Load()), time.Duration(half.Load())
	res.Goroutines = runtime.NumGoroutine()
	counts := c.meter.Snapshot()
	res.Requests, res.TooMany, res.Failed, res.ElectionErrors = counts.Requests, counts.TooMany, counts.Failed, errs.Load()
	res.RequestsByOp, res.BytesIn = counts.Breakdown(), counts.BytesIn

	// What the key watcher pays on every change: the whole prefix.
	meter := NewMeter()
	lister, err := consul.NewClient(consul.Config{Address: env.URL, WrapTransport: meter.Wrap})
	if err == nil {
		lctx, cancel := context.WithTimeout(ctx, eventTimeout)
		t0 := time.Now()
		entries, _, lerr := lister.ListPrefix(lctx, prefix+"/", 0, 0)
		res.ListDuration = time.Since(t0)
		cancel()
		lister.Close()
		if lerr == nil {
			res.ListEntries, res.ListBytes = len(entries), meter.Snapshot().BytesIn
		}
	}

	t0 := time.Now()
	c.stop()
	res.StopDuration = time.Since(t0)
	res.PeakRSSBytes = peakRSS()
	res.PeakStackBytes, res.PeakHeapBytes, res.PeakLiveBytes = peakStack.Load(), peakHeap.Load(), peakLive.Load()
	res.PeakGoroutines = int(max(peak.Load(), int64(res.Goroutines)))
	return res, ctx.Err()
}

// peakRSS is the process's VmHWM, in bytes (0 if unknown).
func peakRSS() int64 { return vmHWM("self") }

// ScaleFigure turns a ScaleResult into figure 5's rows. api.Lock is not run
// at this size: figure 4 shows where it stops.
func ScaleFigure(res ScaleResult, timeout time.Duration, refLimit string) Figure {
	f := Figure{Name: "Figure 5: scale"}
	n := res.Resources
	label := fmt.Sprintf("%d resources", n)
	var all Value
	if res.AllHeldAfter > 0 {
		all = Seconds(res.AllHeldAfter)
	} else {
		all = Missing(fmt.Sprintf("not all held: %d of %d after %s", res.Held, n, res.Elapsed.Round(time.Second)))
	}
	ref := Missing(refLimit)
	f.Rows = append(f.Rows,
		Row{Figure: "5 scale", Measure: label + ": time until all held", Elect: all, Ref: ref, Goal: "≤ 2 s"},
		Row{Figure: "5 scale", Measure: label + ": peak RSS", Elect: Quantity(float64(res.PeakRSSBytes)/(1<<20), "MB"), Ref: ref, Goal: "≤ 128 MB"},
		Row{Figure: "5 scale", Measure: label + ": goroutines (peak / held)", Elect: Quantity(float64(res.PeakGoroutines), "").With(fmt.Sprintf("%d once held", res.Goroutines)), Ref: ref},
		Row{Figure: "5 scale", Measure: label + ": one read of the whole prefix", Elect: Millis(res.ListDuration).With(fmt.Sprintf("%d keys, %.1f MB", res.ListEntries, float64(res.ListBytes)/(1<<20))), Ref: Missing("—")},
	)
	f.notef("consul-elect: first resource held after %s, half after %s, all after %s",
		res.FirstHeldAfter.Round(time.Millisecond), res.HalfHeldAfter.Round(time.Millisecond), all)
	f.notef("consul-elect: %d requests until all held or the bound (%s; %.1f MB of answers read), %d answered 429, %d transport errors, %d ElectionError events; bounded at %s; Stop took %s",
		res.Requests, res.RequestsByOp, float64(res.BytesIn)/(1<<20), res.TooMany, res.Failed, res.ElectionErrors, timeout, res.StopDuration.Round(time.Millisecond))
	f.notef("consul-elect: of the peak RSS, Go counted at most %.0f MB of goroutine stacks and %.0f MB of heap objects, of which a GC found at most %.0f MB live (sampled every 50 ms)",
		float64(res.PeakStackBytes)/(1<<20), float64(res.PeakHeapBytes)/(1<<20), float64(res.PeakLiveBytes)/(1<<20))
	f.notef("one read of the whole prefix (the key watchers read one shard of it after each change): %d keys, %s, %.1f MB",
		res.ListEntries, res.ListDuration.Round(time.Millisecond), float64(res.ListBytes)/(1<<20))
	return f
}
