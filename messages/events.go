package messages

import (
	"errors"
	"time"
)

// Event is one of LeadershipAcquired, LeadershipLost, LeaderChanged and
// ElectionError: the engine publishes exactly these on the actor system's
// EventStream, and the Go API delivers the same values on Election.Events.
// They are values, never pointers; a subscriber type-switches on them. The
// interface is sealed: no other type is an Event.
type Event interface{ event() }

func (LeadershipAcquired) event() {}
func (LeadershipLost) event()     {}
func (LeaderChanged) event()      {}
func (ElectionError) event()      {}

// Errors of commands, tested with errors.Is.
var (
	// ErrNotLeader: a command only a leader can carry out (Proclaim) was
	// sent to a candidate that does not lead the resource.
	ErrNotLeader = errors.New("this candidate does not lead the resource")
	// ErrNoCandidate: a Switchover's target is not a live, healthy
	// candidate for the resource, or there is none to hand over to.
	ErrNoCandidate = errors.New("no live, healthy candidate to hand over to")
	// ErrNoLeader: a Switchover was asked for a resource nobody leads.
	ErrNoLeader = errors.New("nobody leads the resource")
)

// Reason says why a candidate stopped being leader.
type Reason string

const (
	// ReasonResigned: the candidate resigned (Resign), releasing the key.
	ReasonResigned Reason = "resigned"
	// ReasonStopped: the engine stopped (Stop), releasing the key.
	ReasonStopped Reason = "stopped"
	// ReasonSessionInvalidated: Consul invalidated the session (destroyed by
	// an operator, expired, its node or agent failed, the agent restarted).
	ReasonSessionInvalidated Reason = "session invalidated"
	// ReasonRenewDeadline: the session could not be renewed in time; the
	// leader stepped down before Consul could expire the session (self-fence).
	ReasonRenewDeadline Reason = "renew deadline"
	// ReasonPermissionDenied: the ACL token no longer allows renewing the
	// session or holding the key; the leader stepped down.
	ReasonPermissionDenied Reason = "permission denied"
	// ReasonHealthCheckCritical: the bound health check went critical.
	ReasonHealthCheckCritical Reason = "health check critical"
	// ReasonKeyDeleted: someone deleted the lock key.
	ReasonKeyDeleted Reason = "key deleted"
	// ReasonKeyTaken: the key was released by someone else or is now held
	// by another session.
	ReasonKeyTaken Reason = "key taken"
	// ReasonKeyChanged: the key's flags were changed by someone else; the
	// key is no longer an election key of this project.
	ReasonKeyChanged Reason = "key changed"
	// ReasonSwitchover: the leader handed over on purpose (a Switchover, or
	// Options.Preempt for a candidate of higher priority), after its work
	// had stopped.
	ReasonSwitchover Reason = "switchover"
	// ReasonUnhealthy: the application reported this candidate unhealthy
	// (SetHealth); the leader stepped down after its work had stopped.
	ReasonUnhealthy Reason = "unhealthy"
	// ReasonError: the resource's lock actor failed and was restarted.
	ReasonError Reason = "error"
)

// LeadershipAcquired is published by lock[resource] when this candidate
// becomes leader of Resource.
type LeadershipAcquired struct {
	Resource    string
	Key         string // <KeyPrefix>/<Resource>
	CandidateID string
	Session     string
	// FencingToken is the raft index of the write that acquired the key. It
	// is strictly increasing across every leadership of the key for the life
	// of the Consul cluster; pass it to the systems the leader writes to.
	FencingToken uint64
	// LockIndex is Consul's count of acquisitions of the key. For
	// information only: it restarts at 1 when the key is deleted.
	LockIndex uint64
	At        time.Time
}

// LeadershipLost is published by lock[resource] the moment this candidate
// stops being leader of Resource. It is published before the engine talks to
// Consul about it: a leader never waits on the network to step down.
type LeadershipLost struct {
	Resource     string
	CandidateID  string
	Session      string
	FencingToken uint64 // the token of the leadership that ended
	Reason       Reason
	Err          error // the Consul error behind Reason, if any
	At           time.Time
	// StopBy is when work started as leader must have stopped: the last
	// renewal sent plus the fence window (Options.Timing), less a tenth of it
	// for clocks that run at different rates; with FastFailover, the same
	// for the check's TTL if sooner. Another candidate cannot acquire the key
	// before then without this one having heard. Zero when unknown.
	StopBy time.Time
}

// LeaderChanged is published by lock[resource] whenever the observed holder
// of Resource's key changes, or the holder proclaims new metadata, to leaders
// and followers alike. LeaderID is empty while nobody leads.
type LeaderChanged struct {
	Resource string
	// CandidateID is the observing candidate (this engine), so that several
	// engines can share one EventStream.
	CandidateID  string
	LeaderID     string
	Node         string
	Session      string
	FencingToken uint64 // of the leader's term: the raft index of its acquiring write
	Since        time.Time
	// Metadata is what the leader wrote with its candidate id, at
	// acquisition or later with Proclaim.
	Metadata map[string]string
}

// ElectionError is published by any actor when Consul answers with an error
// the engine retries or cannot resolve by itself (permission denied, a
// foreign key at the lock's path, Consul unreachable). Resource is empty for
// errors of the shared session.
type ElectionError struct {
	Resource    string
	CandidateID string // the candidate (engine) that met the error
	Op          string // what was attempted: "create session", "renew session", "acquire", …
	Err         error
	At          time.Time
}
