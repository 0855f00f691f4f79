// Package chaos is consul-elect's fault suite: five `consul-elect run`
// candidates (the real binary) campaign for one resource on a real Consul
// server agent, each through a TCP proxy of its own, while faults chosen
// from a printed, replayable seed hit the leader: SIGKILL, a freeze of the
// leader and its command (SIGSTOP past the TTL, then SIGCONT), a freeze of
// consul-elect alone while its command runs on, a cut connection, latency, an
// operator destroying the session, and a restart of the Consul agent.
//
// Each leader's command (cmd/chaoschild) appends "start|beat|stop ID TOKEN
// UNIXNANOS" lines to a shared log every few milliseconds and writes through
// a fenced Store that rejects tokens lower than the highest it has accepted.
// Check reads both and reports what the suite asserts:
//
//  1. Faults that do not freeze the leader (kill, cut, latency, session
//     destroyed, agent restarted): no two leadership intervals overlap. The
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
// implies: 2×TTL + lock-delay + a margin.
//
// The tests run a short variant with `go test` and the full run (at least 200
// forced transitions) with `go test -tags chaos -run TestChaosFull`; see
// docs/reliability.md for the command, the seed and the figures.
package chaos
