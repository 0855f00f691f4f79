// Package chaos is consul-elect's fault suite: five candidates — four
// `consul-elect run` processes (the real binary, one with --fast-failover)
// and a Go program on Election.Run (cmd/apicandidate) — campaign for one
// resource on a real Consul server agent, each through a TCP proxy and an
// HTTP proxy of its own, while faults chosen from a printed, replayable seed
// hit the leader: SIGKILL, SIGHUP, SIGQUIT, a freeze of the leader and its
// command (SIGSTOP past the TTL, then SIGCONT), a freeze of consul-elect
// alone while its command runs on, a cut connection, latency, short and long
// bursts of 500 or 429 answers, an operator destroying the session (the
// leader's, or a waiting candidate's), a switchover, and a restart of the
// Consul agent.
//
// Each leader's command (cmd/chaoschild) appends "start|beat|stop ID TOKEN
// UNIXNANOS" lines to a shared log every few milliseconds and writes through
// a fenced Store that rejects tokens lower than the highest it has accepted.
// Check reads both and reports what the suite asserts:
//
//  1. Faults that do not freeze the leader (every kind but the two
//     freezes): no two leadership intervals overlap. The
//     leader fences itself before Consul can let another candidate in, and a
//     lock-delay at least the kill grace covers the time to stop its command.
//  2. A frozen leader cannot stop its command while frozen, so after it
//     resumes its command may overlap the next leader's in wall-clock time.
//     Here the guarantee is the fencing token: the store never accepts a
//     write whose token is lower than one it has already accepted. How long
//     the stale command lives after consul-elect resumes is measured (it is
//     past its deadline, so it is SIGKILLed at once).
//
// Fencing tokens must increase strictly from one leader to the next, and
// after every fault a leader must be back within the bound the configuration
// implies: 2×TTL + lock-delay + a margin (kill grace + margin after a
// signal that stops consul-elect or a switchover). A burst of errors shorter
// than the leader's step-down point must leave its term as it was; a longer
// one must end it.
//
// The tests run a short variant with `go test` and the full run (at least 300
// forced transitions) with `go test -tags chaos -run TestChaosFull`; see
// docs/reliability.md for the command, the seed and the figures.
// TestChaosCluster (and TestChaosClusterFull) runs the same candidates on
// three Consul servers and a client agent, with faults of Consul itself: a
// raft leader killed, a server cut off, a snapshot restored (consulfaults.go).
package chaos
