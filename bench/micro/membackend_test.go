package micro

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
)

// memBackend is an in-memory lock service with Consul's semantics for what
// the engine uses: sessions, lock/unlock with a raft-like index, and
// blocking prefix reads. Lock-delay is not modelled (benchmarks use 0).
type memBackend struct {
	// Backend is nil: a method the engine's interface gains later panics
	// here instead of breaking the build.
	actors.Backend

	mu       sync.Mutex
	index    uint64
	kv       map[string]consul.Entry
	keys     []string // sorted
	sessions map[string]bool
	nextID   int
	changed  chan struct{} // closed and replaced on every write

	renewals atomic.Int64
	renewed  chan struct{} // a value per renewal, if anyone listens
}

var _ actors.Backend = (*memBackend)(nil)

func newMemBackend() *memBackend {
	return &memBackend{index: 1, kv: map[string]consul.Entry{}, sessions: map[string]bool{},
		changed: make(chan struct{}), renewed: make(chan struct{}, 1)}
}

// write bumps the index and wakes blocking reads; m.mu is held.
func (m *memBackend) write() uint64 {
	m.index++
	close(m.changed)
	m.changed = make(chan struct{})
	return m.index
}

func (m *memBackend) Agent(context.Context) (consul.AgentInfo, error) {
	return consul.AgentInfo{Node: "mem", Datacenter: "dc1", Server: true}, nil
}

func (m *memBackend) ServerNode(context.Context, string) (string, error) { return "mem", nil }

func (m *memBackend) CreateSession(context.Context, consul.SessionSpec) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	id := fmt.Sprintf("session-%d", m.nextID)
	m.sessions[id] = true
	m.write()
	return id, nil
}

func (m *memBackend) RenewSession(_ context.Context, id string) error {
	m.mu.Lock()
	ok := m.sessions[id]
	m.mu.Unlock()
	if !ok {
		return &consul.Error{Op: "renew session", Kind: consul.ErrSessionGone, Err: fmt.Errorf("session %s", id)}
	}
	m.renewals.Add(1)
	select {
	case m.renewed <- struct{}{}:
	default:
	}
	return nil
}

func (m *memBackend) DestroySession(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, id)
	for key, e := range m.kv {
		if e.Session == id {
			e.Session = ""
			e.ModifyIndex = m.write()
			m.kv[key] = e
		}
	}
	return nil
}

func (m *memBackend) SessionInfo(_ context.Context, id string) (consul.SessionInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.sessions[id] {
		return consul.SessionInfo{}, &consul.Error{Op: "read session", Kind: consul.ErrSessionGone, Err: fmt.Errorf("session %s", id)}
	}
	return consul.SessionInfo{ID: id, Node: "mem", TTL: time.Second}, nil
}

func (m *memBackend) ListPrefix(ctx context.Context, prefix string, index uint64, wait time.Duration) ([]consul.Entry, uint64, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		m.mu.Lock()
		if index == 0 || m.index > index {
			from := sort.SearchStrings(m.keys, prefix)
			to := from
			for to < len(m.keys) && strings.HasPrefix(m.keys[to], prefix) {
				to++
			}
			entries := make([]consul.Entry, 0, to-from) // one allocation: the benchmark is of the engine
			for _, key := range m.keys[from:to] {
				entries = append(entries, m.kv[key])
			}
			at := m.index
			m.mu.Unlock()
			return entries, at, nil
		}
		changed := m.changed
		m.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			return nil, index, nil
		case <-ctx.Done():
			return nil, index, ctx.Err()
		}
	}
}

func (m *memBackend) Acquire(_ context.Context, key, session string, value []byte) (consul.Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.sessions[session] {
		return consul.Entry{}, &consul.Error{Op: "acquire " + key, Kind: consul.ErrSessionGone, Err: fmt.Errorf("invalid session %s", session)}
	}
	e, ok := m.kv[key]
	if ok && e.Session != "" && e.Session != session {
		return consul.Entry{}, &consul.Error{Op: "acquire " + key, Kind: consul.ErrLockHeld, Err: fmt.Errorf("lock is already held")}
	}
	if !ok {
		m.insertKey(key)
	}
	if e.Session != session {
		e.LockIndex++
	}
	e.Key, e.Value, e.Flags, e.Session = key, value, consul.KeyFlags, session
	e.ModifyIndex = m.write()
	m.kv[key] = e
	return e, nil
}

func (m *memBackend) Release(_ context.Context, key, session string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.kv[key]
	if !ok || e.Session != session {
		return nil
	}
	e.Session, e.Value = "", value
	e.ModifyIndex = m.write()
	m.kv[key] = e
	return nil
}

func (m *memBackend) NodeCheck(context.Context, string, string, uint64, time.Duration) (consul.Check, uint64, error) {
	return consul.Check{}, 0, fmt.Errorf("memBackend has no health checks")
}

// insertKey keeps keys sorted; m.mu is held.
func (m *memBackend) insertKey(key string) {
	i := sort.SearchStrings(m.keys, key)
	m.keys = append(m.keys, "")
	copy(m.keys[i+1:], m.keys[i:])
	m.keys[i] = key
}

// preload creates n lock keys under prefix held by a session of nobody in
// the benchmark, as other candidates' leaderships would be.
func (m *memBackend) preload(prefix string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	owner := fmt.Sprintf("session-%d", m.nextID)
	m.sessions[owner] = true
	value := consul.EncodeValue(consul.Value{CandidateID: "someone-else", Node: "mem", AcquiredAt: time.Now().UTC()})
	for i := range n {
		key := fmt.Sprintf("%s/other-%05d", prefix, i)
		m.insertKey(key)
		m.kv[key] = consul.Entry{Key: key, Value: value, Flags: consul.KeyFlags, Session: owner, LockIndex: 1, ModifyIndex: m.write()}
	}
}

// listener is an actors.Observer that hears only events.
type listener func(messages.Event)

func (l listener) Event(evt messages.Event)                { l(evt) }
func (listener) Refreshed(time.Time, time.Duration, error) {}
func (listener) ConsulError(string, error)                 {}
