package messages

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Commands a user sends to the election root (actor users with
// system.Root.Send/Request, Go API users through its methods).

// Campaign starts campaigning for Resource: the candidate becomes leader
// whenever the key <KeyPrefix>/<Resource> is free. Metadata, when not nil,
// replaces Options.Metadata in the value written to the key.
//
// Worker, when set, is the work to do while leading: the resource's lock actor
// spawns it as its child each time it becomes leader (the worker receives the
// LeadershipAcquired right after Started) and stops it when the leadership
// ends. On a voluntary end (Resign, Withdraw, Stop) the key is released only
// after the worker has terminated, or after Options.DrainTimeout; on an
// involuntary one (session invalidated, key taken, renew deadline) the worker
// is stopped at once, and the candidate campaigns again once it has
// terminated. A worker that panics is restarted, with capped backoff, while
// the leadership lasts.
//
// Campaigning for a resource already campaigned for changes nothing, except
// that a Worker is taken if the campaign had none.
type Campaign struct {
	Resource string
	Metadata map[string]string
	Worker   *actor.Props
}

// Resign gives up leadership of Resource (releasing the key, without
// lock-delay) and keeps campaigning. During HoldOff the candidate does not try
// to acquire, so that another candidate can take over.
type Resign struct {
	Resource string
	HoldOff  time.Duration
}

// Withdraw stops campaigning for Resource, releasing the key if held (after
// the worker has stopped, as for Resign). Sent with Request, it is answered
// with the resource's State once the key is released.
type Withdraw struct {
	Resource string
}

// Proclaim has the leader of Resource write new Metadata into its key's value
// without a new term (one write that checks the session still holds the
// key). Followers see it in LeaderChanged. Sent with Request, it is answered
// with the resource's State once written, or with an ElectionError (Op
// "proclaim"; Err is ErrNotLeader when this candidate does not lead).
type Proclaim struct {
	Resource string
	Metadata map[string]string
}

// SetHealth reports the application's own health (the seed's health-based
// election). An unhealthy candidate does not campaign, and an unhealthy
// leader steps down (its worker drained, then the key released, reason
// ReasonUnhealthy). The candidate registry shows it, with Reason.
type SetHealth struct {
	Healthy bool
	Reason  string
}

// Switchover asks for a planned handover of Resource: its leader stops its
// work (the drain), then releases the key, and To (a live, healthy candidate
// for Resource; empty: the one of highest priority other than the leader)
// acquires it while the others stay out. Any candidate may ask. Sent with
// Request, it is answered once the request is written to the key with a State
// whose Leader is the term asked to hand over (the switchover is done when
// the key is held with another FencingToken), or with an ElectionError (Op
// "switchover").
type Switchover struct {
	Resource string
	To       string
}

// GetState asks for the state of Resource. The root answers the sender with
// a State.
type GetState struct {
	Resource string
}

// State answers GetState.
type State struct {
	Resource    string
	Campaigning bool
	IsLeader    bool
	// FencingToken of this candidate's leadership, when IsLeader.
	FencingToken uint64
	// Leader is the observed holder of the key; LeaderID is empty when
	// nobody holds it.
	Leader LeaderChanged
	// Candidates are the live candidates campaigning for Resource, as the
	// candidate registry says, highest priority first.
	Candidates []Candidate
}

// Candidate is one live candidate as the candidate registry shows it: every
// engine registers itself once, and its entry reads as gone once its session
// has ended.
type Candidate struct {
	ID        string
	Node      string
	Session   string // that holds its registry entry
	Priority  int
	Healthy   bool
	Reason    string // why it is unhealthy, as it said (SetHealth)
	Version   string // of consul-elect
	Started   time.Time
	Resources []string
}

// Stop asks the root to stop gracefully: every leader resigns (releasing its
// key, so a standby takes over at once), the session is destroyed, then the
// root stops. The root answers the sender with Stopped when done.
type Stop struct{}

// Stopped answers Stop.
type Stopped struct{}
