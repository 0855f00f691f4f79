package actors

import (
	"context"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
)

// Backend is what the engine needs of Consul. *consul.Client implements it;
// so can an in-memory lock service for tests.
type Backend interface {
	Agent(ctx context.Context) (consul.AgentInfo, error)
	ServerNode(ctx context.Context, datacenter string) (string, error)
	CreateSession(ctx context.Context, spec consul.SessionSpec) (string, error)
	RenewSession(ctx context.Context, id string) error
	DestroySession(ctx context.Context, id string) error
	SessionInfo(ctx context.Context, id string) (consul.SessionInfo, error)
	ListPrefix(ctx context.Context, prefix string, index uint64, wait time.Duration) ([]consul.Entry, uint64, error)
	Acquire(ctx context.Context, key, session string, value []byte) (consul.Entry, error)
	Release(ctx context.Context, key, session string, value []byte) error
	Proclaim(ctx context.Context, key, session string, value []byte) (consul.Entry, error)
	NodeCheck(ctx context.Context, node, checkID string, index uint64, wait time.Duration) (consul.Check, uint64, error)
}

// Observer is told what the engine does, synchronously, on the actors'
// goroutines: every event the moment it is published (before the EventStream
// hears of it), every session refresh and every failed Consul request. Its
// methods must return at once. Package metrics implements it.
type Observer interface {
	Event(evt messages.Event)
	Refreshed(sentAt time.Time, took time.Duration, err error)
	ConsulError(op string, err error)
}

// FailoverBackend is what Options.FastFailover and Options.Service need in
// addition: service instances with a TTL check on the local agent.
type FailoverBackend interface {
	RegisterService(ctx context.Context, svc consul.Service) error
	UpdateCheck(ctx context.Context, checkID, status, output string) error
	DeregisterService(ctx context.Context, serviceID string) error
}

// AsyncAcquirer is implemented by backends that acquire without a goroutine
// per call (consul.Client batches acquires into transactions): done is called
// exactly once with the result (or ctx's error) and must not block.
type AsyncAcquirer interface {
	AcquireAsync(ctx context.Context, key, session string, value []byte, done func(consul.Entry, error))
}

// AsyncReleaser is implemented by backends that release without a goroutine
// per call (consul.Client batches releases too): done is called exactly once
// with the result (or ctx's error) and must not block.
type AsyncReleaser interface {
	ReleaseAsync(ctx context.Context, key, session string, value []byte, done func(error))
}

// Transferrer is implemented by backends that hand a held key to another
// session in one write (consul.Client.Transfer). With one, a leader that
// gives up its key hands it to a successor, whose term then starts without
// an acquire of its own.
type Transferrer interface {
	Transfer(ctx context.Context, key, session string, to consul.Successor, value []byte) (consul.Entry, error)
}

// AsyncTransferrer is Transferrer without a goroutine per call (consul.Client
// batches transfers with acquires and releases): done is called exactly once
// with the result (or ctx's error) and must not block.
type AsyncTransferrer interface {
	TransferAsync(ctx context.Context, key, session string, to consul.Successor, value []byte, done func(consul.Entry, error))
}

// Relister is implemented by backends that read a prefix again more cheaply
// given the last reading (consul.Client.Relist: the entries that did not
// change are not decoded again). last is what the previous call returned
// and index the index it returned; the answer is ListPrefix's.
type Relister interface {
	Relist(ctx context.Context, prefix string, index uint64, wait time.Duration, last []consul.Entry) ([]consul.Entry, uint64, error)
}

// Pruner is implemented by backends that delete a key only if it is
// unchanged. With one, the engine deletes the registry entries of candidates
// gone for a while (see registryPruneAfter); without, they stay.
type Pruner interface {
	DeleteIfUnchanged(ctx context.Context, key string, index uint64) (bool, error)
}

var (
	_ Backend          = (*consul.Client)(nil)
	_ FailoverBackend  = (*consul.Client)(nil)
	_ AsyncAcquirer    = (*consul.Client)(nil)
	_ AsyncReleaser    = (*consul.Client)(nil)
	_ Pruner           = (*consul.Client)(nil)
	_ Transferrer      = (*consul.Client)(nil)
	_ AsyncTransferrer = (*consul.Client)(nil)
)
