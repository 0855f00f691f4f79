package consul

import (
	"context"
	"sort"
	"time"

	"github.com/hashicorp/consul/api"
)

// Calls for the command-line tool's status, watch and release: an operator
// looks at one key, or at everything a session holds.

// WatchKey reads key. With index > 0 it is a blocking query: it answers when
// the key changed after index, or after wait. ok is false when the key does
// not exist. It returns the index for the next call (already passed through
// NextIndex), also on a missing key, so that a watcher blocks until the key
// is created.
func (c *Client) WatchKey(ctx context.Context, key string, index uint64, wait time.Duration) (e Entry, ok bool, next uint64, err error) {
	pair, meta, err := c.api.KV().Get(key, c.blocking(ctx, index, wait))
	if err != nil {
		return Entry{}, false, index, wrap("read "+key, err)
	}
	next = NextIndex(index, meta.LastIndex)
	if pair == nil {
		return Entry{}, false, next, nil
	}
	return entryOf(pair), true, next, nil
}

// KeysHeldBy lists, sorted, every key held by session among those the token
// may read. Consul keeps no index from sessions to keys, so it reads the
// whole KV store: an operator's question, not one for a hot path.
func (c *Client) KeysHeldBy(ctx context.Context, session string) ([]string, error) {
	pairs, _, err := c.api.KV().List("", c.query(ctx))
	if err != nil {
		return nil, wrap("list every key", err)
	}
	var keys []string
	for _, p := range pairs {
		if p.Session == session {
			keys = append(keys, p.Key)
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// ReleaseHeldBy unlocks the key entry on behalf of entry.Session, keeping its
// value and flags, and reports whether that session still held it: unlike
// ReleaseAny, it never releases a holder the operator has not seen.
func (c *Client) ReleaseHeldBy(ctx context.Context, entry Entry) (released bool, err error) {
	ops := api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVUnlock, Key: entry.Key, Session: entry.Session, Value: entry.Value, Flags: entry.Flags}}}
	_, err = c.txn(ctx, "release "+entry.Key, ops)
	switch {
	case err == nil:
		return true, nil
	case isNotHeld(err):
		return false, nil
	}
	return false, err
}
