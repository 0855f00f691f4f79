// Package bench is the benchmark harness of consul-elect: it measures the
// consul-elect engine side by side with HashiCorp's api.Lock (through
// consul/reference) on the same real Consul agent, in one run, and reports
// each figure as a table row with both values and their ratio.
//
// Figures:
//
//  1. Handover: the leader resigns (consul-elect Resign, api.Lock Unlock);
//     the time until the standby holds the key and has said so (a
//     LeadershipAcquired read from Events; Lock returning).
//  2. Failover: the leader dies. Its session is destroyed by an operator, or
//     expires by TTL. The time from the invalidation to the new leader, minus
//     the lock-delay.
//  3. Fast failover: the leader is killed, lock-delay 0, session TTL 10 s;
//     consul-elect with Options.FastFailover (through the enableFastFailover
//     hook) against api.Lock, which can only wait for the session to expire.
//  4. Idle cost: Consul HTTP requests per minute of 1, 100 and 1,000 held
//     resources in one process.
//  5. Scale: 10,000 resources in one process: time until all are held, peak
//     RSS, goroutines.
//  6. Micro: allocations per acquire, handover and renewal in the actors, with
//     an in-memory backend (package bench/micro, go test -bench).
//  7. A fleet: P candidate processes (real OS processes, RunFleetCandidate)
//     campaign for the same K resources on one agent, each with its own
//     counted client. A cold start, an idle window, an operator's churn of
//     releases (a txn unlock with the holder's session, value and flags), a
//     rolling restart (SIGTERM, then a new process) and the final stop, each
//     with its requests, bytes, 429 answers and requests in flight; the
//     agent's CPU; peak RSS per process; overlapping terms by the events' At.
//
// A dead process is simulated by cutting its HTTP transport (Meter.Kill):
// its requests in flight are cancelled and new ones fail before reaching the
// agent, so nothing is released or renewed, as after a SIGKILL. Nothing here
// asserts a performance number: the harness reports, people judge.
package bench
