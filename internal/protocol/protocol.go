// Package protocol is the conversation among the engine's actors: who tells
// whom that a session exists or is gone, that a key changed, that a lock holds
// or releases its key. Users never send these; they are kept in one place so
// that the engine can be read as one conversation. The commands users send and
// the events they receive are in package messages.
//
// Messages an actor sends only to itself (results of its own HTTP calls and
// timers, tagged with a generation) are private to that actor.
package protocol

import (
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
)

// SessionReady is sent by session to the root when a session exists, and by
// the root to renewal, the key watcher, the health watcher and every lock.
type SessionReady struct {
	ID   string
	Node string // the node the session belongs to
	// RenewedAt is when the create request (or, when the root resends it to a
	// restarted renewal, the last successful renew) was sent: Consul cannot
	// have started the session's current TTL earlier.
	RenewedAt time.Time
	// CheckFedAt is when the fast-failover check was last set passing (its
	// registration), zero without FastFailover.
	CheckFedAt time.Time
}

// CheckFed is sent by the health watcher to the root, and by the root to
// renewal, after each successful refresh of the fast-failover check: the
// self-fence deadline follows the check's TTL from SentAt.
type CheckFed struct {
	SessionID string
	SentAt    time.Time
}

// SessionGone says a session can no longer be relied on. Sent to the root by
// renewal (404 on renew, deadline missed), the key watcher (our keys were
// released and the session is gone) or the health watcher (check critical).
// The root forwards it to the locks (leaders step down with Reason) and to
// session, which destroys it if it may still exist and creates a new one.
type SessionGone struct {
	ID     string
	Reason messages.Reason
	Err    error
}

// Renewed is sent by renewal to the root after each successful renewal.
// SentAt is when the renew request was sent: Consul restarted the TTL no
// earlier than that.
type Renewed struct {
	ID     string
	SentAt time.Time
}

// KeyEntry is the observed state of one lock key, decoded.
type KeyEntry struct {
	Key string
	// Observed is the index (X-Consul-Index) of the listing this entry comes
	// from: an entry observed before a leadership's acquiring write
	// (Observed < its fencing token) says nothing about that leadership.
	Observed uint64
	// Restored is set when the listing came after Consul's index went back
	// (a snapshot restore, or an agent restarted without its data): Consul's
	// state was replaced, so the entry is news to every leader whatever its
	// token, and a key it shows free (or held by a candidate's own session)
	// was not released with a lock-delay.
	Restored    bool
	Exists      bool
	Session     string // holder session; empty when free
	Flags       uint64
	LockIndex   uint64
	ModifyIndex uint64
	// Foreign is set when the key's flags are not consul-elect's: someone
	// else uses this path, and the engine will not take it over.
	Foreign bool
	// Holder is decoded from the value consul-elect writes.
	HolderID string
	Node     string
	Since    time.Time
	Metadata map[string]string
	// FencingToken is the holder's term's (consul.FencingToken).
	FencingToken uint64
	// Handover is a switchover request in the value, if any.
	Handover *consul.Handover
	// From is the candidate that handed the key to HolderID, if it was
	// handed over rather than acquired.
	From string
	// Released is set when the key was let go by an unlock
	// (consul.Value.Released), not freed by the end of its holder's session.
	Released bool
	// HolderLockDelay is the holder session's lock-delay, when the key
	// watcher could read it while the session was alive (negative: unknown).
	HolderLockDelay time.Duration
}

// KeysChanged is sent by the key watcher to the root with every key under the
// prefix whose entry changed since the last answer (Exists false: deleted).
// SessionGone, when set, reports that keys held by our session were released
// because the session no longer exists (with the reason: invalidated, or its
// health check is critical); the root handles it before the entries.
type KeysChanged struct {
	Entries     []KeyEntry
	SessionGone *SessionGone
}

// KeyState is sent to lock[resource] with the latest entry of its key (on
// change, and when the lock actor starts): by the root until every shard of
// the watch has answered once, then by the key watcher of the key's shard.
type KeyState struct {
	Resource string
	Entry    KeyEntry
}

// ChildStarted is sent to the root by renewal, the key watcher, the health
// watcher and lock[resource] (Resource set) when they (re)start, so that the
// root sends them the current session and, to a lock, its key's state. It is
// sent with Request, so that the root knows whom to answer.
type ChildStarted struct {
	Resource string
}

// Holding is sent by lock[resource] to the root, and by the root to the key
// watcher, when the lock acquired its key at index Token. A key deleted
// before the watcher's next read never shows in a listing; told of the
// acquisition, the watcher reports the key's next state even then.
type Holding struct {
	Key     string
	Session string
	Token   uint64
}

// Releasing is sent by lock[resource] to the root, and by the root to the
// key watcher, before the lock releases its key itself: the watcher then
// knows that the key losing our session is no news about the session.
type Releasing struct {
	Key string
}

// Released is sent by lock[resource] to the root when, while stopping or
// withdrawing, it has released its key (or found nothing to release).
type Released struct {
	Resource string
}

// HealthCritical is sent by the health watcher to the root when the bound
// check is critical.
type HealthCritical struct {
	CheckID string
	Output  string
}

// Campaigning is sent by the root to the registry with every resource it
// campaigns for, whenever that changes.
type Campaigning struct {
	Resources []string
}

// CandidatesChanged is sent by the registry to the root, and by the root to
// every lock, with every live candidate, whenever the registry changes.
type CandidatesChanged struct {
	Candidates []messages.Candidate
}

// Leading is sent by lock[resource] to the root, and by the root to the
// service, when this candidate starts or stops leading Resource.
type Leading struct {
	Resource string
	Leading  bool
}

// Share is this candidate's fair share of the resources, with
// Options.Balance, as the root last worked it out: whether it leads its share
// (Full), and which peers lead less than theirs (Below, by id). A full
// candidate leaves a free key for a while to a peer below its share other
// than the key's last holder. The root publishes a new Share rather than
// change one; locks read the latest.
type Share struct {
	Full  bool
	Below []string
}

// HandOver is sent by the root to lock[resource], with Options.Balance, to
// hand its term over to candidate To, below its share (a switchover).
type HandOver struct {
	To string
}
