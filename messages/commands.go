package messages

import "time"

// Commands a user sends to the election root (actor users with
// system.Root.Send/Request, Go API users through its methods).

// Campaign starts campaigning for Resource: the candidate becomes leader
// whenever the key <KeyPrefix>/<Resource> is free. Campaigning for a resource
// already campaigned for changes nothing. Metadata, when not nil, replaces
// Options.Metadata in the value written to the key.
type Campaign struct {
	Resource string
	Metadata map[string]string
}

// Resign gives up leadership of Resource (releasing the key, without
// lock-delay) and keeps campaigning. During HoldOff the candidate does not try
// to acquire, so that another candidate can take over.
type Resign struct {
	Resource string
	HoldOff  time.Duration
}

// Withdraw stops campaigning for Resource, releasing the key if held.
type Withdraw struct {
	Resource string
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
}

// Stop asks the root to stop gracefully: every leader resigns (releasing its
// key, so a standby takes over at once), the session is destroyed, then the
// root stops. The root answers the sender with Stopped when done.
type Stop struct{}

// Stopped answers Stop.
type Stopped struct{}
