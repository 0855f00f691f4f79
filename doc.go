// Package consulelect is leader election on HashiCorp Consul, built as
// Proto.Actor actors: one Consul session per candidate, any number of
// resources, one blocking query for all of them.
//
// Use it three ways: spawn actors.NewProps in your own actor system (or under
// your own supervisor), give a Campaign a Worker and subscribe to its events
// on the EventStream; run the consul-elect command; or call Start here for a
// plain Go API:
//
//	e, err := consulelect.Start(ctx, consulelect.DefaultOptions())
//	if err != nil { … }
//	defer e.Stop(context.Background())
//	err = e.Run(ctx, "order-processor", func(ctx context.Context, lead *consulelect.Leadership) error {
//		return process(ctx, lead.FencingToken) // ctx ends the moment leadership does
//	})
//
// Run releases the key on a voluntary end (Resign, Stop, ctx done) only after
// the function has returned, so a standby never starts while this leader's
// work still runs.
//
// # Guarantees
//
//   - At most one session holds a key at a time (Consul's lock semantics), and
//     the fencing token of each leadership (the raft index of the write that
//     acquired the key) is strictly greater than every earlier leadership's of
//     that key, for the life of the Consul cluster.
//   - Self-fencing: a leader that cannot renew its session publishes
//     LeadershipLost (and cancels Leadership.Context) no later than
//     lastRenewSent + W − (W/10 + SelfFenceMargin), where lastRenewSent is when the
//     last successful renew request was sent and W, the fence window, is
//     min(SessionTTL, LockDelay) (Options.Timing). Consul cannot expire
//     the session before lastRenewSent + SessionTTL, and when a check
//     (serfHealth of a dead node or agent) invalidates it earlier, lock-delay
//     keeps others out for LockDelay: either way the leader has stopped
//     believing it leads before another candidate can acquire the key.
//   - A leader learns that its key was deleted, taken or released, or that its
//     session was invalidated or its health check went critical, from one
//     blocking query, and steps down before doing anything else.
//   - Resign and Stop release keys explicitly, so a standby takes over at
//     once (with Run or a Worker, once the work has stopped, at most
//     DrainTimeout later); an invalidated session's keys stay locked for
//     LockDelay.
//
// # Not guaranteed
//
//   - With LockDelay under one second, W is SessionTTL: a failure of the
//     leader's node can then hand leadership over before the leader knows.
//   - The self-fence deadline assumes this process's clock runs at the same
//     rate as the Consul servers' (within the margin) and that the process is
//     not frozen (GC pause, SIGSTOP, VM suspend) around the deadline. A
//     frozen leader cannot stop its work while frozen: there, only the
//     fencing token protects the systems it writes to. Guard writes with it
//     (consul.Client.GuardedPut does so for Consul KV).
//   - When a health check goes critical, Consul invalidates the session in the
//     same write; the leader's step-down follows it by one blocking query's
//     latency. LockDelay is what keeps the next leader out meanwhile: keep it
//     above the time your leader's work needs to stop.
//   - Events describe what this candidate observed; a follower learns of a new
//     leader only after Consul's write, by one blocking query.
package consulelect
