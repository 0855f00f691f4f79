// Package inmem is an in-process lock service that behaves like the parts of
// Consul that consul-elect uses. Use it for your unit tests and to try the
// API without a Consul agent:
//
//	store := inmem.New()
//	defer store.Close()
//	opts := consulelect.DefaultOptions()
//	opts.Backend = store
//	e, err := consulelect.Start(ctx, opts)
//
// The election engine runs unchanged on it and publishes the same events. A
// *Store also has consul.Client's GuardedPut, for a leader's fenced writes;
// the hands of an operator (Get, Put, Delete, ReleaseAny, RegisterTTLCheck,
// DeregisterCheck, beside the backend's DestroySession, SessionInfo and
// UpdateCheck), which consul.Client leaves to Consul's own tools; and Freeze
// and Unfreeze to make the "agent" stop answering.
//
// # Modelled as Consul does it
//
//   - One global index, like Consul's raft index: every write (a session
//     created or invalidated, a key set, locked, unlocked or deleted, a check
//     changed) takes the next one. A write that changes nothing (the same
//     value, flags and session) is skipped and keeps its ModifyIndex, as
//     Consul's state store does. Renewing a session is not a write.
//   - Locks: Acquire is Consul's transaction `lock`, answered with the entry. It is
//     refused with ErrLockDelay first, then ErrSessionGone for an unknown
//     session, then ErrLockHeld; LockIndex counts acquisitions and starts
//     again at 1 when the key is deleted; a session re-locking its own key
//     keeps the LockIndex. Release (`unlock`) clears the session without
//     lock-delay. A plain Put keeps the key's session and resets its
//     LockIndex to 0, exactly as Consul's KV PUT does.
//   - Sessions: the TTL is checked against the server's session_ttl_min
//     (10s by default, as in Consul; WithMinSessionTTL lowers it) and 24h. A
//     session not renewed is invalidated TTLMultiplier × TTL after its last
//     renewal (Consul's multiplier is 2; WithTTLMultiplier changes it).
//     Invalidation (DestroySession, TTL expiry, a bound check going critical
//     or being deregistered) releases the session's keys in one write and
//     starts each key's lock-delay (capped at 60s), which outlives a delete
//     of the key.
//   - Health checks: every session is bound to serfHealth unless it names its
//     checks or asks for none; creating a session bound to a missing or
//     critical check is refused (ErrRejected). A TTL check that is not
//     updated in time goes critical with output "TTL expired". Setting
//     serfHealth critical simulates the node failing.
//   - Blocking queries (ListPrefix, NodeCheck): with an index, they answer
//     when the result's index moves past it, or after the wait (5 minutes
//     when 0, at most 10, plus up to wait/16 of jitter), or when ctx ends.
//     The index of a prefix is the highest ModifyIndex or tombstone under it,
//     or the whole KV index when there is none; a node's checks answer with
//     the index of the last change to any check.
//   - Errors are *consul.Error values, classified as consul.Client means
//     to: test them with errors.Is against consul.ErrLockHeld,
//     ErrLockDelay, ErrSessionGone, ErrLockLost, ErrRejected.
//   - Size limits: a Put's value is at most 512 KiB (kv_max_value_size).
//     Acquire, Release and GuardedPut are transactions, whose JSON body is
//     at most 512 KiB (txn_max_req_len) with the value base64-encoded in
//     it: a lock's value is at most about 384 KiB. The bodies are computed
//     byte for byte as consul.Client's requests measure on Consul.
//
// # Freeze
//
// Freeze makes the store behave like a paused agent (SIGSTOP): every call of
// the actors.Backend interface blocks, and so does any answer not yet
// returned, until Unfreeze or until the caller's context ends. Time goes on
// for the "servers": sessions expire and TTL checks lapse while frozen, as
// they do when one client agent is paused and the servers are not. The
// operator methods (Get, Put, Delete, ReleaseAny and the check methods) are
// never frozen:
// they act as an operator talking to another agent.
//
// # Not modelled
//
//   - One datacenter with one node, which is also the server: ServerNode for
//     another datacenter fails like an unreachable one, transiently.
//   - No ACLs (nothing is ever ErrPermissionDenied), no services (a check's
//     serviceID is only recorded), no session behaviour "delete", no
//     key-delete-tree, CAS or general transactions.
//   - No restarts or snapshot restores: the index never goes backwards, and
//     tombstones are never reaped.
//   - No network: calls never fail transiently unless the store is closed or
//     the context ends, and latencies are near zero, so a race the network
//     hides on a real agent may show here (and the other way round).
//   - The wall clock is real: TTLs, lock-delays and waits take their real
//     time. There is no fake clock.
package inmem
