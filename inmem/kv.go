package inmem

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/blocking"
)

// ListPrefix reads every key under prefix, sorted. With index > 0 it is a
// blocking query: it answers when the prefix's index moves past index, after
// wait, or when ctx ends. The returned index for the next call follows
// Consul's rules, as consul.Client's does: never 0.
func (s *Store) ListPrefix(ctx context.Context, prefix string, index uint64, wait time.Duration) ([]consul.Entry, uint64, error) {
	op := "list " + prefix
	if err := s.enter(ctx, op); err != nil {
		return nil, index, err
	}
	current := func() uint64 { return s.prefixIndex(prefix) }
	if err := s.block(ctx, op, index, wait, current); err != nil {
		return nil, index, err
	}
	var entries []consul.Entry
	for key, e := range s.kvs {
		if strings.HasPrefix(key, prefix) {
			entries = append(entries, clone(*e))
		}
	}
	got := current()
	s.mu.Unlock()
	if err := s.leave(ctx, op); err != nil {
		return nil, index, err
	}
	slices.SortFunc(entries, func(a, b consul.Entry) int { return strings.Compare(a.Key, b.Key) })
	return entries, blocking.NextIndex(index, got), nil
}

// prefixIndex, with s.mu held, is the index Consul answers a list of prefix
// with: the highest ModifyIndex or tombstone under it; the KV store's index
// when there is none (or for the empty prefix); never 0.
func (s *Store) prefixIndex(prefix string) uint64 {
	var idx uint64
	if prefix != "" {
		for key, e := range s.kvs {
			if strings.HasPrefix(key, prefix) {
				idx = max(idx, e.ModifyIndex)
			}
		}
		for key, deleted := range s.tombstones {
			if strings.HasPrefix(key, prefix) {
				idx = max(idx, deleted)
			}
		}
	}
	if idx == 0 {
		idx = s.kvIndex
	}
	return max(idx, 1)
}

// Acquire locks key for session, writing value and consul.KeyFlags, and
// returns the entry after the lock, as Consul's transaction `lock` answers
// it. It is refused, in this order, with ErrLockDelay while the key
// is in the lock-delay of an invalidated holder, ErrSessionGone when the
// session does not exist, ErrLockHeld when another session holds the key.
func (s *Store) Acquire(ctx context.Context, key, session string, value []byte) (consul.Entry, error) {
	op := "acquire " + key
	if err := s.enter(ctx, op); err != nil {
		return consul.Entry{}, err
	}
	entry, err := s.lock(op, key, session, value)
	s.mu.Unlock()
	if lerr := s.leave(ctx, op); lerr != nil {
		return consul.Entry{}, lerr
	}
	return entry, err
}

// lock, with s.mu held, is Consul's lock-delay check (made before the
// transaction) and then its kvsLockTxn.
func (s *Store) lock(op, key, session string, value []byte) (consul.Entry, error) {
	refuse := func(kind error, err error) (consul.Entry, error) {
		return consul.Entry{}, &consul.Error{Op: op, Kind: kind, Err: err}
	}
	if n := b64(value) + len(key) + len(session) + acquireTxnFixed; n > maxTxnBytes {
		return refuse(consul.ErrRejected, txnTooLarge(n))
	}
	if until, ok := s.lockDelays[key]; ok && time.Now().Before(until) {
		return refuse(consul.ErrLockDelay, fmt.Errorf("failed to lock key %q due to lock delay", key))
	}
	if session == "" {
		return refuse(nil, errors.New("missing session")) // unclassified by consul.Client too
	}
	if _, ok := s.sessions[session]; !ok {
		return refuse(consul.ErrSessionGone, fmt.Errorf("invalid session %q", session))
	}
	locked := consul.Entry{Key: key, Value: bytes.Clone(value), Flags: consul.KeyFlags, Session: session, LockIndex: 1}
	if old, ok := s.kvs[key]; ok {
		switch old.Session {
		case session: // already ours: a re-lock
			locked.LockIndex = old.LockIndex
		case "":
			locked.LockIndex = old.LockIndex + 1
		default:
			return refuse(consul.ErrLockHeld, fmt.Errorf("failed to lock key %q, lock is already held", key))
		}
	}
	return clone(s.write(locked)), nil
}

// Release unlocks key if session holds it, writing value and
// consul.KeyFlags, without lock-delay. A key the session does not hold is
// left alone, and that is not an error.
func (s *Store) Release(ctx context.Context, key, session string, value []byte) error {
	op := "release " + key
	if err := s.enter(ctx, op); err != nil {
		return err
	}
	var err error
	switch old, ok := s.kvs[key]; {
	case b64(value)+len(key)+len(session)+releaseTxnFixed > maxTxnBytes:
		err = &consul.Error{Op: op, Kind: consul.ErrRejected, Err: txnTooLarge(b64(value) + len(key) + len(session) + releaseTxnFixed)}
	case session == "":
		err = &consul.Error{Op: op, Err: errors.New("missing session")} // unclassified by consul.Client too
	case ok && old.Session == session:
		s.write(consul.Entry{Key: key, Value: bytes.Clone(value), Flags: consul.KeyFlags, LockIndex: old.LockIndex})
	}
	s.mu.Unlock()
	if lerr := s.leave(ctx, op); lerr != nil {
		return lerr
	}
	return err
}

// Transfer hands key, held by session, to the successor's session in one
// write, like consul.Client.Transfer: ErrLockLost when session does not hold
// key (nothing changes), ErrTransferRefused when the successor's session is
// gone or does not hold to.Guard (the key stays session's).
func (s *Store) Transfer(ctx context.Context, key, session string, to consul.Successor, value []byte) (consul.Entry, error) {
	op := "transfer " + key
	if err := s.enter(ctx, op); err != nil {
		return consul.Entry{}, err
	}
	var entry consul.Entry
	var err error
	guard, guarded := s.kvs[to.Guard]
	body := b64(value) + 2*len(key) + len(session) + len(to.Guard) + 2*len(to.Session) + transferTxnFixed
	switch old, ok := s.kvs[key]; {
	case body > maxTxnBytes:
		err = &consul.Error{Op: op, Kind: consul.ErrRejected, Err: txnTooLarge(body)}
	case session == "" || !ok || old.Session != session:
		err = &consul.Error{Op: op, Kind: consul.ErrLockLost, Err: fmt.Errorf("failed to unlock key %q, lock isn't held, or is held by another session", key)}
	case !guarded || guard.Session != to.Session:
		err = &consul.Error{Op: op, Kind: consul.ErrTransferRefused, Err: fmt.Errorf("failed session check for %q", to.Guard)}
	default:
		if _, alive := s.sessions[to.Session]; !alive {
			err = &consul.Error{Op: op, Kind: consul.ErrTransferRefused, Err: fmt.Errorf("invalid session %q", to.Session)}
			break
		}
		entry = clone(s.write(consul.Entry{Key: key, Value: bytes.Clone(value), Flags: consul.KeyFlags, Session: to.Session, LockIndex: old.LockIndex + 1}))
	}
	s.mu.Unlock()
	if lerr := s.leave(ctx, op); lerr != nil {
		return consul.Entry{}, lerr
	}
	return entry, err
}

// DeleteIfUnchanged deletes key only if its ModifyIndex is still index, like
// consul.Client.DeleteIfUnchanged, and reports whether it did.
func (s *Store) DeleteIfUnchanged(ctx context.Context, key string, index uint64) (bool, error) {
	op := "delete " + key
	if err := s.enter(ctx, op); err != nil {
		return false, err
	}
	old, ok := s.kvs[key]
	deleted := ok && old.ModifyIndex == index
	if deleted {
		s.remove(key)
	}
	s.mu.Unlock()
	if err := s.leave(ctx, op); err != nil {
		return false, err
	}
	return deleted, nil
}

// ReleaseAny unlocks key on behalf of whichever session holds it, keeping
// its value and flags, as an operator would (never frozen). It returns the
// session that held it, "" if none.
func (s *Store) ReleaseAny(_ context.Context, key string) (string, error) {
	if err := s.operate("release " + key); err != nil {
		return "", err
	}
	defer s.mu.Unlock()
	old, ok := s.kvs[key]
	if !ok || old.Session == "" {
		return "", nil
	}
	released := *old
	released.Session = ""
	s.write(released)
	return old.Session, nil
}

// Proclaim writes value into key while session holds it, without a new term,
// like consul.Client.Proclaim; ErrLockLost when session no longer holds key.
func (s *Store) Proclaim(ctx context.Context, key, session string, value []byte) (consul.Entry, error) {
	op := "proclaim " + key
	if err := s.enter(ctx, op); err != nil {
		return consul.Entry{}, err
	}
	var entry consul.Entry
	var err error
	if old, ok := s.kvs[key]; !ok || old.Session != session {
		err = &consul.Error{Op: op, Kind: consul.ErrLockLost, Err: fmt.Errorf("%s is no longer held by session %s", key, session)}
	} else {
		entry, err = s.lock(op, key, session, value)
	}
	s.mu.Unlock()
	if lerr := s.leave(ctx, op); lerr != nil {
		return consul.Entry{}, lerr
	}
	return entry, err
}

// GuardedPut writes key=value only if the leadership fence describes still
// holds its lock, in one transaction, like consul.Client.GuardedPut:
// check-session on fence.Key, then (Token > 0) that the key was last written
// by the term of that fencing token (its acquisition or its own Proclaim),
// then set. ErrLockLost otherwise.
func (s *Store) GuardedPut(ctx context.Context, fence consul.Fence, key string, value []byte) error {
	op := "guarded write " + key
	if err := s.enter(ctx, op); err != nil {
		return err
	}
	body := b64(value) + len(fence.Key) + len(fence.Session) + len(key) + guardedTxnFixed
	if fence.Token != 0 {
		body += len(fence.Key) + len(strconv.FormatUint(fence.Token, 10)) + checkIndexOpFixed
	}
	var err error
	switch lock, ok := s.kvs[fence.Key]; {
	case body > maxTxnBytes:
		err = &consul.Error{Op: op, Kind: consul.ErrRejected, Err: txnTooLarge(body)}
	case !ok || lock.Session != fence.Session || (fence.Token != 0 && termToken(*lock) != fence.Token):
		err = &consul.Error{Op: op, Kind: consul.ErrLockLost,
			Err: fmt.Errorf("%s is no longer held by session %s with token %d", fence.Key, fence.Session, fence.Token)}
	default:
		s.put(key, value, 0)
	}
	s.mu.Unlock()
	if lerr := s.leave(ctx, op); lerr != nil {
		return lerr
	}
	return err
}

// termToken is the fencing token of the term that wrote e.
func termToken(e consul.Entry) uint64 {
	v, _ := consul.DecodeValue(e.Value)
	return consul.FencingToken(e, v)
}

// Put writes key with flags and no lock, as an operator would (never frozen).
// Like Consul's KV PUT, it keeps the key's session and resets its LockIndex.
func (s *Store) Put(_ context.Context, key string, value []byte, flags uint64) error {
	op := "write " + key
	if err := s.operate(op); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if len(value) > maxValueBytes {
		return &consul.Error{Op: op, Kind: consul.ErrRejected, Err: tooLarge(key, value)}
	}
	s.put(key, value, flags)
	return nil
}

// put, with s.mu held, is a plain KV set.
func (s *Store) put(key string, value []byte, flags uint64) {
	e := consul.Entry{Key: key, Value: bytes.Clone(value), Flags: flags}
	if old, ok := s.kvs[key]; ok {
		e.Session = old.Session
	}
	s.write(e)
}

// Get reads key; ok is false when it does not exist (never frozen).
func (s *Store) Get(_ context.Context, key string) (e consul.Entry, ok bool, err error) {
	if err := s.operate("read " + key); err != nil {
		return consul.Entry{}, false, err
	}
	defer s.mu.Unlock()
	if old, ok := s.kvs[key]; ok {
		return clone(*old), true, nil
	}
	return consul.Entry{}, false, nil
}

// Delete removes key, leaving a tombstone at the delete's index (never
// frozen). A lock-delay on the key outlives it, as in Consul. Deleting a
// missing key changes nothing.
func (s *Store) Delete(_ context.Context, key string) error {
	if err := s.operate("delete " + key); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.kvs[key]; ok {
		s.remove(key)
	}
	return nil
}

// remove, with s.mu held, deletes key in a new write, leaving a tombstone.
func (s *Store) remove(key string) {
	idx := s.next()
	delete(s.kvs, key)
	s.tombstones[key] = idx
	s.kvIndex = idx
}

// write, with s.mu held, stores e in a new write, unless it equals the
// current entry (value, flags, session, LockIndex): Consul then skips the
// write and the entry keeps its ModifyIndex. It returns the stored entry.
func (s *Store) write(e consul.Entry) consul.Entry {
	if old, ok := s.kvs[e.Key]; ok && old.LockIndex == e.LockIndex && old.Flags == e.Flags &&
		old.Session == e.Session && bytes.Equal(old.Value, e.Value) {
		return *old
	}
	return s.set(e, s.next())
}

// set, with s.mu held, stores e as part of write idx.
func (s *Store) set(e consul.Entry, idx uint64) consul.Entry {
	e.ModifyIndex = idx
	s.kvs[e.Key] = &e
	delete(s.tombstones, e.Key)
	s.kvIndex = idx
	return e
}

func clone(e consul.Entry) consul.Entry {
	e.Value = bytes.Clone(e.Value)
	return e
}

func tooLarge(key string, value []byte) error {
	return fmt.Errorf("Request body(%d bytes) too large, max size: %d bytes (kv_max_value_size), for key %q", len(value), maxValueBytes, key)
}

// Acquire, Release and GuardedPut are transactions: Consul bounds their
// JSON body by txn_max_req_len (512 KiB), and values travel in it base64
// encoded, so a lock's value can be at most about 384 KiB. The bodies are
// computed as consul.Client's encoding makes them (measured against Consul:
// base64 of the value, the keys and session, and a fixed part per
// transaction).
func b64(value []byte) int { return base64.StdEncoding.EncodedLen(len(value)) }

// The fixed parts of consul.Client's transaction bodies (the JSON around
// values, keys, session IDs and tokens), measured on Consul from its "Request
// body(N bytes) too large" answers.
const (
	acquireTxnFixed   = 136 // lock
	releaseTxnFixed   = 138 // unlock
	guardedTxnFixed   = 244 // check-session + set
	checkIndexOpFixed = 124 // the check-index of a fence with a token
	transferTxnFixed  = 401 // unlock + check-session + lock
)

func txnTooLarge(body int) error {
	return fmt.Errorf("Request body(%d bytes) too large, max size: %d bytes (txn_max_req_len)", body, maxTxnBytes)
}
