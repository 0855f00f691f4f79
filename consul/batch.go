package consul

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

// maxTxnOps is Consul's limit of operations in one transaction (1.14
// answers 413 "too many operations" above it).
const maxTxnOps = 64 * 2

// maxTxnBytes bounds the JSON body of one batched transaction: Consul's
// txn_max_req_len (512 KiB by default) counts values base64-encoded. Half of
// it leaves room for servers configured lower and for the encoding's fixed
// parts; a single request above it is sent alone.
const maxTxnBytes = 256 * 1024

// bodySize estimates the JSON body ops add to a transaction.
func bodySize(ops api.TxnOps) int {
	n := 0
	for _, op := range ops {
		if op.KV != nil {
			n += base64.StdEncoding.EncodedLen(len(op.KV.Value)) + len(op.KV.Key) + len(op.KV.Session) + 140
		}
	}
	return n
}

// batchTimeout bounds one batched transaction.
const batchTimeout = 30 * time.Second

// batcher coalesces concurrent small transactions (a lock+get per acquire, an
// unlock per release) into transactions of up to maxTxnOps operations: 10,000
// resources campaigning at once cost ~160 transactions, not 10,000 requests.
//
// A transaction is all or nothing, so when some operations fail, their
// requests get their own errors and the rest are sent again without them.
// No goroutine runs while nothing is pending.
type batcher struct {
	client  *api.Client
	mu      sync.Mutex
	pending []*txnRequest
	running bool
}

type txnRequest struct {
	ctx  context.Context
	ops  api.TxnOps
	done func(txnResult) // called once, from the batcher's goroutine; must not block
}

type txnResult struct {
	results api.TxnResults
	err     error // a rolled-back request's reasons, or the transport error
}

// do runs ops, batched with whatever else is pending, and returns their
// results.
func (b *batcher) do(ctx context.Context, ops api.TxnOps) (api.TxnResults, error) {
	answer := make(chan txnResult, 1)
	b.submit(ctx, ops, func(res txnResult) { answer <- res })
	select {
	case res := <-answer:
		return res.results, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// idle reports whether no transaction is pending or being sent.
func (b *batcher) idle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.running
}

// submit queues ops; done is called exactly once with their results (or
// ctx's error, if it ends before they are sent).
func (b *batcher) submit(ctx context.Context, ops api.TxnOps, done func(txnResult)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = append(b.pending, &txnRequest{ctx: ctx, ops: ops, done: done})
	if !b.running {
		b.running = true
		go b.run()
	}
}

// run sends batches until nothing is pending.
func (b *batcher) run() {
	for {
		b.mu.Lock()
		batch, abandoned, n, size := []*txnRequest{}, []*txnRequest{}, 0, 0
		for len(b.pending) > 0 && n+len(b.pending[0].ops) <= maxTxnOps &&
			(len(batch) == 0 || size+bodySize(b.pending[0].ops) <= maxTxnBytes) {
			req := b.pending[0]
			b.pending = b.pending[1:]
			if req.ctx.Err() != nil {
				abandoned = append(abandoned, req) // given up before it was sent
			} else {
				batch = append(batch, req)
				n += len(req.ops)
				size += bodySize(req.ops)
			}
		}
		done := len(batch) == 0 && len(b.pending) == 0
		if done {
			b.running = false
		}
		b.mu.Unlock()
		for _, req := range abandoned {
			req.done(txnResult{err: req.ctx.Err()})
		}
		if done {
			return
		}
		b.send(batch)
	}
}

// send runs batch as one transaction; on a rollback it answers the failing
// requests and sends the others again.
func (b *batcher) send(batch []*txnRequest) {
	for len(batch) > 0 {
		ops := api.TxnOps{}
		owner := []int{} // op index → request index
		for i, req := range batch {
			ops = append(ops, req.ops...)
			for range req.ops {
				owner = append(owner, i)
			}
		}
		ctx, cancel := batchContext(batch)
		ok, resp, _, err := b.client.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
		cancel()
		switch {
		case err != nil:
			for _, req := range batch {
				req.done(txnResult{err: err})
			}
			return
		case ok:
			at := 0
			for _, req := range batch {
				req.done(txnResult{results: resp.Results[at : at+len(req.ops)]})
				at += len(req.ops)
			}
			return
		}
		failed := map[int][]string{}
		for _, e := range resp.Errors {
			if e.OpIndex >= 0 && e.OpIndex < len(owner) {
				failed[owner[e.OpIndex]] = append(failed[owner[e.OpIndex]], e.What)
			}
		}
		if len(failed) == 0 { // a rollback that names no operation: fail them all
			for i := range batch {
				failed[i] = append(failed[i], "transaction rolled back")
			}
		}
		rest := batch[:0:0]
		for i, req := range batch {
			if reasons, ok := failed[i]; ok {
				req.done(txnResult{err: errors.New(strings.Join(reasons, "; "))})
			} else {
				rest = append(rest, req)
			}
		}
		batch = rest
	}
}

// batchContext ends when batchTimeout passes or every request has given up.
func batchContext(batch []*txnRequest) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	var live atomic.Int64
	live.Store(int64(len(batch)))
	stops := make([]func() bool, 0, len(batch))
	for _, req := range batch {
		stops = append(stops, context.AfterFunc(req.ctx, func() {
			if live.Add(-1) == 0 {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
