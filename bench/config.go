package bench

import "time"

// Config sizes every figure. DefaultConfig is what docs/benchmarks.md
// reports; Tiny is for the smoke test.
type Config struct {
	// Figure 1.
	Handovers       int // measured handovers per implementation (≥ 200 for the issue)
	WarmupHandovers int // run first, not measured
	HandoverTTL     time.Duration

	// Figure 2.
	FailoverSamples int           // per implementation and variant
	FailoverTTL     time.Duration // session TTL of the leader that dies
	LockDelay       time.Duration // L, subtracted from the result

	// Figure 3.
	FastFailoverSamples int           // per implementation; 0 skips the figure
	FastFailoverTTL     time.Duration // session TTL of both (the engine's check TTL is its default)

	// Figure 4.
	IdleSizes  []int
	IdleTTL    time.Duration
	IdleWindow time.Duration // how long requests are counted
	IdleSettle time.Duration // after all are held, before counting

	// Figure 5.
	ScaleResources int
	ScaleTimeout   time.Duration

	// Figure 7: a fleet of candidate processes.
	FleetProcesses int           // P, candidate processes
	FleetResources int           // K, resources every one of them campaigns for
	FleetSettle    time.Duration // after all are held, after the churn and after each restart
	FleetIdle      time.Duration // how long idle requests are counted
	FleetChurn     time.Duration // how long an operator releases held keys
	FleetRate      int           // releases per second during the churn
	FleetTimeout   time.Duration // bound on the cold start and on each takeover wait
	// FleetOptions is JSON decoded over every candidate's
	// consulelect.DefaultOptions(), e.g. {"SessionTTL": 10000000000}
	// (durations in nanoseconds). Empty: the defaults.
	FleetOptions string
}

// DefaultConfig is the configuration of the documented runs.
func DefaultConfig() Config {
	return Config{
		Handovers: 200, WarmupHandovers: 10, HandoverTTL: 15 * time.Second,
		FailoverSamples: 3, FailoverTTL: 2 * time.Second, LockDelay: time.Second,
		FastFailoverSamples: 2, FastFailoverTTL: 10 * time.Second,
		IdleSizes: []int{1, 100, 1000}, IdleTTL: 15 * time.Second, IdleWindow: 15 * time.Second, IdleSettle: 2 * time.Second,
		ScaleResources: 10000, ScaleTimeout: 3 * time.Minute,
		FleetProcesses: 4, FleetResources: 10000, FleetSettle: 3 * time.Second, FleetIdle: 20 * time.Second,
		FleetChurn: 20 * time.Second, FleetRate: 10, FleetTimeout: 3 * time.Minute,
	}
}

// TinyConfig runs every figure at the smallest size that still exercises it.
func TinyConfig() Config {
	return Config{
		Handovers: 3, WarmupHandovers: 1, HandoverTTL: 10 * time.Second,
		FailoverSamples: 1, FailoverTTL: time.Second, LockDelay: 200 * time.Millisecond,
		FastFailoverSamples: 1, FastFailoverTTL: 2 * time.Second,
		IdleSizes: []int{2}, IdleTTL: 2 * time.Second, IdleWindow: 2 * time.Second, IdleSettle: 200 * time.Millisecond,
		ScaleResources: 20, ScaleTimeout: 30 * time.Second,
		FleetProcesses: 2, FleetResources: 200, FleetSettle: 500 * time.Millisecond, FleetIdle: 2 * time.Second,
		FleetChurn: 2 * time.Second, FleetRate: 10, FleetTimeout: 30 * time.Second,
		// A short lock-delay keeps the wait after the churn short (Fleet).
		FleetOptions: `{"LockDelay": 1000000000}`,
	}
}
