// Package actors is the consul-elect election engine: Proto.Actor actors that
// elect one candidate per resource on HashiCorp Consul, with one shared
// session per candidate.
//
// NewProps returns the Props of the election root. Spawn it at the top of an
// actor system or under your own supervisor; it campaigns for
// Options.Resources and for every messages.Campaign it receives, and
// publishes messages.LeadershipAcquired, LeadershipLost, LeaderChanged and
// ElectionError on the actor system's EventStream.
//
//	election root        supervisor (capped exponential backoff, never escalates)
//	├── session          creates the shared session; recreates it when it is gone
//	├── renewal          renews every TTL/2; owns the self-fence deadline
//	├── health watcher   with HealthCheckID or FastFailover: watches / feeds checks
//	├── key watcher      one blocking query over <KeyPrefix>/, fans changes out
//	└── lock-<resource>  one per resource: follower → acquiring → leader → …
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
