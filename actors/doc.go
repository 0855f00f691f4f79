// Package actors is the consul-elect election engine: Proto.Actor actors that
// elect one candidate per resource on HashiCorp Consul, with one shared
// session per candidate.
//
// NewProps returns the Props of the election root. Spawn it at the top of an
// actor system or under your own supervisor; it campaigns for
// Options.Resources and for every messages.Campaign it receives, and
// publishes the messages.Event values (LeadershipAcquired, LeadershipLost,
// LeaderChanged, ElectionError) on the actor system's EventStream. Give a
// Campaign a Worker, and the election runs it only while it leads.
//
//	election root        supervisor (capped exponential backoff, never escalates)
//	├── session          creates the shared session; recreates it when it is gone
//	├── renewal          renews within the fence window (Options.Timing); owns the self-fence deadline
//	├── health watcher   with HealthCheckID or FastFailover: watches / feeds checks
//	├── key watcher      one blocking query over <KeyPrefix>/, fans changes out
//	└── lock-<resource>  one per resource: follower → acquiring → leading → draining → releasing
//	    └── worker       Campaign.Worker, while leading; restarted with backoff if it panics
//
// A term ends voluntarily (Resign, Withdraw, Stop) or involuntarily (the
// session invalidated, the renew deadline, the key taken). A voluntary end
// publishes LeadershipLost, stops the worker and waits for it to terminate
// (at most Options.DrainTimeout) before releasing the key, so that a standby
// starts only after this leader's work has stopped. An involuntary end cannot
// wait: the key may already be someone else's. The worker is stopped at once,
// and the lock campaigns again once it has terminated.
//
// Who restarts on what: an invalidated session (renew answered 404, our keys
// released with the session gone, a critical health check) makes every
// leader publish LeadershipLost first, then a new session is created and the
// locks campaign again. A missed renew deadline is handled the same way, and
// the old session is destroyed in case it still exists. A Consul error on one
// key restarts only that key's lock actor, after a backoff. The watchers retry
// their blocking queries with backoff, and locks keep their state meanwhile.
//
// Every blocking call runs in a goroutine whose result comes back to the
// actor as a message; an actor never blocks and never touches its context
// from another goroutine. Timers are time.AfterFunc sending to self (the
// scheduler's repeating timers race in this protoactor-go version).
//
// The guarantees (self-fencing, fencing tokens) and their limits are stated in
// the documentation of the root package, consulelect.
package actors
