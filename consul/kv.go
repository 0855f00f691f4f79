package consul

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/excalibur/consul-elect/internal/backoff"
	"github.com/excalibur/consul-elect/internal/blocking"
	"github.com/hashicorp/consul/api"
)

// Entry is one KV entry.
type Entry struct {
	Key         string
	Value       []byte
	Flags       uint64
	Session     string
	LockIndex   uint64
	ModifyIndex uint64
}

func entryOf(p *api.KVPair) Entry {
	return Entry{Key: p.Key, Value: p.Value, Flags: p.Flags, Session: p.Session, LockIndex: p.LockIndex, ModifyIndex: p.ModifyIndex}
}

// ListPrefix reads every key under prefix. With index > 0 it is a blocking
// query: it answers when something under prefix changed after index, or
// after wait. It returns the entries and the index for the next call, by
// Consul's rules (blocking.NextIndex): 0 when Consul's index went backwards,
// so that the next call reads at once, and never 0 otherwise.
func (c *Client) ListPrefix(ctx context.Context, prefix string, index uint64, wait time.Duration) ([]Entry, uint64, error) {
	return c.Relist(ctx, prefix, index, wait, nil)
}

// Relist is ListPrefix for a watcher that keeps what its last call returned
// (last, as it was returned, and index, the index it returned): an entry
// whose key and ModifyIndex are unchanged comes back as it is in last,
// without being decoded again. The listing is decoded as it arrives (see
// listing). With index 0, or when Consul's index went back, last is not used.
func (c *Client) Relist(ctx context.Context, prefix string, index uint64, wait time.Duration, last []Entry) ([]Entry, uint64, error) {
	l := &listing{since: index}
	if index > 0 {
		l.last = last
	}
	_, meta, err := c.api.KV().List(prefix, c.blockingQuery(withListing(ctx, l), index, wait))
	if err != nil {
		return nil, index, wrap("list "+prefix, err)
	}
	// A listing the token may not read in full answers as if the hidden keys
	// did not exist. Consul checks a blocking query's token once, when the
	// query starts: one begun while the token lacked its policy goes on
	// hiding the keys after the policy is back, and would report a key just
	// acquired as deleted.
	if meta.ResultsFilteredByACLs {
		return nil, index, &Error{Op: "list " + prefix, Kind: ErrPermissionDenied,
			Err: errors.New("the ACL token may not read every key under the prefix")}
	}
	return l.entries, blocking.NextIndex(index, meta.LastIndex), nil
}

// Acquire locks key for session, writing value and KeyFlags, and returns the
// entry as it is after the lock. It is a transaction's `lock`, whose result is
// the entry as written (Consul blanks its value, which is ours), so the
// returned ModifyIndex is the raft index of the acquiring write itself:
// strictly increasing across all acquisitions of the key, whatever happens to
// it in between (unlike LockIndex, which restarts when the key is deleted).
//
// Errors: ErrLockHeld, ErrLockDelay, ErrSessionGone (the session is invalid),
// ErrPermissionDenied, ErrRejected (a value over Consul's limits), or a
// transient error: the agent unreachable, or ctx ending while Consul answered
// 429 or 5xx (those answers are retried, see batcher, never returned).
func (c *Client) Acquire(ctx context.Context, key, session string, value []byte) (Entry, error) {
	results, err := c.batch.do(ctx, acquireOps(key, session, value), nil)
	return acquired(key, session, value, results, err)
}

// AcquireAsync is Acquire without a goroutine per call: done is called
// exactly once with its result, from the batcher's goroutine (so it must not
// block). Ten thousand resources campaigning at once
// then hold no goroutine each.
func (c *Client) AcquireAsync(ctx context.Context, key, session string, value []byte, done func(Entry, error)) {
	c.batch.submit(&txnRequest{ctx: ctx, ops: acquireOps(key, session, value), done: func(res txnResult) {
		done(acquired(key, session, value, res.results, res.err))
	}})
}

func acquireOps(key, session string, value []byte) api.TxnOps {
	return api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVLock, Key: key, Session: session, Value: value, Flags: KeyFlags}}}
}

func acquired(key, session string, value []byte, results api.TxnResults, err error) (Entry, error) {
	if err != nil {
		return Entry{}, wrap("acquire "+key, err)
	}
	if len(results) < 1 || results[0].KV == nil || results[0].KV.Session != session {
		return Entry{}, &Error{Op: "acquire " + key, Err: errors.New("the transaction answered without the lock")}
	}
	return written(results[0].KV, value), nil
}

// written is the entry a transaction's `lock` answered with, and the value
// it wrote (Consul answers a write without it).
func written(p *api.KVPair, value []byte) Entry {
	e := entryOf(p)
	e.Value = value
	return e
}

// Proclaim writes value into key while session holds it, without a new term:
// one transaction, `check-session`, then `lock` by the holder (which keeps
// the session and the lock index). It returns the entry as written;
// ErrLockLost when session no longer holds key.
//
// The holder's own `lock` can be refused for lock-delay. Consul checks the
// delay on the raft leader, from a table each server keeps in memory with
// its own clock: a server that was cut off applies the last holder's
// invalidation when it catches up, later than the others, and if it leads
// soon after, it refuses the key for that lock-delay again, to its holder
// too. That passes within the old session's lock-delay, so Proclaim waits it
// out until ctx ends, then answers ErrLockDelay.
func (c *Client) Proclaim(ctx context.Context, key, session string, value []byte) (Entry, error) {
	ops := api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: key, Session: session}},
		{KV: &api.KVTxnOp{Verb: api.KVLock, Key: key, Session: session, Value: value, Flags: KeyFlags}},
	}
	retry := backoff.New(lockDelayRetry, maxLockDelayRetry)
	for {
		results, err := c.txn(ctx, "proclaim "+key, ops)
		switch {
		case isNotHeld(err):
			return Entry{}, &Error{Op: "proclaim " + key, Kind: ErrLockLost, Err: fmt.Errorf("%s is no longer held by session %s", key, session)}
		case errors.Is(err, ErrLockDelay):
			if !sleep(ctx, retry.Next()) {
				return Entry{}, err
			}
		case err != nil:
			return Entry{}, err
		default:
			return written(results[1].KV, value), nil
		}
	}
}

// The waits between proclaims refused for a lock-delay: its end is not
// known, and it lasts at most the old session's lock-delay.
const (
	lockDelayRetry    = 100 * time.Millisecond
	maxLockDelayRetry = time.Second
)

// sleep waits d, or less if ctx ends first; it reports whether ctx is live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Release unlocks key if session holds it, leaving value in place (the last
// leader's document) and KeyFlags. Releasing a key the session does not hold
// changes nothing and is not an error.
//
// Releases are batched like acquires: those that come together (a Stop with
// thousands of leaders) go in transactions of up to the agent's limit, and a
// release alone in its batch goes as one `PUT ?release=` (a transaction costs
// Consul more, and a handover waits on it). Errors: ErrPermissionDenied, or
// a transient one (the agent unreachable, or ctx ending while Consul answered
// 429 or 5xx).
func (c *Client) Release(ctx context.Context, key, session string, value []byte) error {
	ops, pair := releaseOps(key, session, value)
	_, err := c.batch.do(ctx, ops, pair)
	return released(key, err)
}

// ReleaseAsync is Release without a goroutine per call: done is called
// exactly once with its result, from the batcher's goroutine (so it must not
// block). A Stop that releases ten thousand leaderships then holds no
// goroutine each.
func (c *Client) ReleaseAsync(ctx context.Context, key, session string, value []byte, done func(error)) {
	ops, pair := releaseOps(key, session, value)
	c.batch.submit(&txnRequest{ctx: ctx, ops: ops, release: pair, done: func(res txnResult) {
		done(released(key, res.err))
	}})
}

// releaseOps are a release as a transaction's operation and as a plain PUT
// (sent when it is alone in its batch).
func releaseOps(key, session string, value []byte) (api.TxnOps, *api.KVPair) {
	ops := api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVUnlock, Key: key, Session: session, Value: value, Flags: KeyFlags}}}
	return ops, &api.KVPair{Key: key, Session: session, Value: value, Flags: KeyFlags}
}

func released(key string, err error) error {
	err = wrap("release "+key, err)
	if errors.Is(err, ErrLockHeld) || isNotHeld(err) {
		return nil
	}
	return err
}

// Transfer hands key, held by session, straight to another candidate's
// session in one write: a transaction that unlocks it, checks that the
// successor's session still holds guard (its entry in the candidate
// registry, which it gives up before it stops), and locks it for the
// successor with value and KeyFlags. The successor's term starts with that
// write, and its ModifyIndex, in the returned entry, is its fencing token.
// A key the session does not hold is left alone, as by Release, and reported
// as ErrLockLost. ErrTransferRefused: the successor's session is gone or no
// longer holds guard; the key is still held by session, to be released.
// Transfers are batched like releases.
func (c *Client) Transfer(ctx context.Context, key, session string, to Successor, value []byte) (Entry, error) {
	results, err := c.batch.do(ctx, transferOps(key, session, to, value), nil)
	return transferred(key, to, value, results, err)
}

// TransferAsync is Transfer without a goroutine per call: done is called
// exactly once with its result, from the batcher's goroutine (so it must not
// block).
func (c *Client) TransferAsync(ctx context.Context, key, session string, to Successor, value []byte, done func(Entry, error)) {
	c.batch.submit(&txnRequest{ctx: ctx, ops: transferOps(key, session, to, value), done: func(res txnResult) {
		done(transferred(key, to, value, res.results, res.err))
	}})
}

// Successor is whom Transfer hands a key to: a session, and a key that
// session holds for as long as its candidate takes keys handed over.
type Successor struct {
	Session string
	Guard   string
}

func transferOps(key, session string, to Successor, value []byte) api.TxnOps {
	return api.TxnOps{
		// The lock that follows writes the value: the unlock's is never seen.
		{KV: &api.KVTxnOp{Verb: api.KVUnlock, Key: key, Session: session, Flags: KeyFlags}},
		{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: to.Guard, Session: to.Session}},
		{KV: &api.KVTxnOp{Verb: api.KVLock, Key: key, Session: to.Session, Value: value, Flags: KeyFlags}},
	}
}

func transferred(key string, to Successor, value []byte, results api.TxnResults, err error) (Entry, error) {
	op := "transfer " + key
	switch {
	case err != nil && strings.Contains(err.Error(), "failed to unlock"):
		return Entry{}, &Error{Op: op, Kind: ErrLockLost, Err: err}
	case err != nil && (isNotHeld(err) || strings.Contains(err.Error(), "invalid session") || strings.Contains(err.Error(), "lock is already held")):
		return Entry{}, &Error{Op: op, Kind: ErrTransferRefused, Err: err}
	case err != nil:
		return Entry{}, wrap(op, err)
	}
	if len(results) < 3 || results[2].KV == nil || results[2].KV.Session != to.Session {
		return Entry{}, &Error{Op: op, Err: errors.New("the transaction answered without the lock")}
	}
	return written(results[2].KV, value), nil
}

// DeleteIfUnchanged deletes key only if its ModifyIndex is still index (a
// check-and-set delete), and reports whether it did: a key written since is
// left alone.
func (c *Client) DeleteIfUnchanged(ctx context.Context, key string, index uint64) (bool, error) {
	deleted, _, err := c.api.KV().DeleteCAS(&api.KVPair{Key: key, ModifyIndex: index}, (&api.WriteOptions{}).WithContext(ctx))
	return deleted, wrap("delete "+key, err)
}

// Fence identifies one leadership of a lock key: the key, the session that
// holds it and the fencing token of the acquisition (LeadershipAcquired
// carries all three).
type Fence struct {
	Key     string
	Session string
	Token   uint64
}

// GuardedPut writes key=value only if the leadership fence describes still
// holds its lock, in one transaction: `check-session` on the lock key, then
// `check-index` against the key's ModifyIndex, then `set`. The lock key is
// written only by the acquisition that starts a term and by the leader's own
// Proclaim, so the check passes for exactly the term whose fencing token is
// fence.Token: after a Proclaim the write is tried once more against the
// index the term wrote last. It is how a leader fences its own writes to
// Consul KV: one that lost the lock without knowing it yet, or whose
// leadership was followed by another on the same session, gets ErrLockLost
// instead of a stale write. A zero Token checks the session only.
func (c *Client) GuardedPut(ctx context.Context, fence Fence, key string, value []byte) error {
	index := fence.Token
	for attempt := 0; ; attempt++ {
		ops := api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: fence.Key, Session: fence.Session}}}
		if index != 0 {
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCheckIndex, Key: fence.Key, Index: index}})
		}
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: key, Value: value}})
		_, err := c.txn(ctx, "guarded write "+key, ops)
		if !isNotHeld(err) {
			return err
		}
		if index != 0 && attempt < maxProclaimRetries {
			// A Proclaim of the same term moves the index: follow it.
			if e, ok, getErr := c.get(ctx, fence.Key); getErr == nil && ok && e.Session == fence.Session && e.ModifyIndex != index {
				if v, decodeErr := DecodeValue(e.Value); decodeErr == nil && v.Token == fence.Token {
					index = e.ModifyIndex
					continue
				}
			}
		}
		return &Error{Op: "guarded write " + key, Kind: ErrLockLost,
			Err: fmt.Errorf("%s is no longer held by session %s with token %d", fence.Key, fence.Session, fence.Token)}
	}
}

// get reads one key; ok is false when it does not exist.
func (c *Client) get(ctx context.Context, key string) (e Entry, ok bool, err error) {
	pair, _, err := c.api.KV().Get(key, c.query(ctx))
	if err != nil || pair == nil {
		return Entry{}, false, wrap("read "+key, err)
	}
	return entryOf(pair), true, nil
}

// maxProclaimRetries bounds how many proclaims GuardedPut follows while it
// tries one write.
const maxProclaimRetries = 3

// isNotHeld recognises Consul's answer to check-session and unlock on a key
// the session does not hold.
func isNotHeld(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "failed session check") || // check-session
		strings.Contains(msg, "failed index check") || // check-index
		strings.Contains(msg, "doesn't exist") || // the key is gone
		strings.Contains(msg, "failed to unlock") // unlock of a key the session does not hold
}

// txn runs ops as one transaction, alone; a rolled-back transaction becomes
// a classified error carrying Consul's reasons.
func (c *Client) txn(ctx context.Context, op string, ops api.TxnOps) (api.TxnResults, error) {
	ok, resp, err := sendTxn(ctx, c.api, ops)
	if err != nil {
		return nil, wrap(op, err)
	}
	if !ok {
		reasons := make([]string, 0, len(resp.Errors))
		for _, e := range resp.Errors {
			reasons = append(reasons, e.What)
		}
		return nil, wrap(op, errors.New(strings.Join(reasons, "; ")))
	}
	return resp.Results, nil
}
