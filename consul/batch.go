package consul

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/excalibur/consul-elect/internal/backoff"
	"github.com/hashicorp/consul/api"
)

// Consul's limit of operations in one transaction: 64 before 1.14, 128 from
// 1.14 (above it the agent answers 413 "too many operations"). The batcher
// reads the agent's version once (txnOpsFor) and, should the agent refuse a
// transaction as too long all the same, halves its limit and sends again.
const (
	txnOpsBefore114 = 64
	txnOpsFrom114   = 128
)

// maxTxnBytes bounds the JSON body of one batched transaction: Consul's
// txn_max_req_len (512 KiB by default) counts values base64-encoded. Half of
// it leaves room for servers configured lower and for the encoding's fixed
// parts; a single request above it is sent alone. An agent that refuses a
// body as too large halves it, down to minTxnBytes.
const (
	maxTxnBytes = 256 * 1024
	minTxnBytes = 16 * 1024
)

// txnOpsFor is the operations limit of the Consul version v ("1.14.11",
// "v1.13.2", "1.15.0-dev+ent"); a version it cannot read gets the lower
// limit, which every version accepts.
func txnOpsFor(v string) int {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	if i := strings.IndexFunc(v, func(r rune) bool { return r != '.' && (r < '0' || r > '9') }); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) < 2 {
		return txnOpsBefore114
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || major < 1 || major == 1 && minor < 14 {
		return txnOpsBefore114
	}
	return txnOpsFrom114
}

// txn is a batch's transaction as it is put together: its operations, the
// requests that own each (owners), each request's operations in it (at), and
// the size of its JSON body. A check-session that an earlier request of the
// batch makes already (the guard of transfers to one successor) is made once,
// for all of them.
type txn struct {
	ops    api.TxnOps
	owners [][]int
	at     [][]int
	bytes  int
	checks map[[2]string]int // check-session (key, session) → its operation
}

// txnOf is the transaction of batch.
func txnOf(batch []*txnRequest) *txn {
	t := &txn{}
	for _, req := range batch {
		t.add(req)
	}
	return t
}

// shared is the operation of the batch that op repeats, if any.
func (t *txn) shared(op *api.TxnOp) (int, bool) {
	kv := op.KV
	if kv == nil || kv.Verb != api.KVCheckSession {
		return 0, false
	}
	j, ok := t.checks[[2]string{kv.Key, kv.Session}]
	return j, ok
}

// fits reports whether req fits in the transaction within the limits.
func (t *txn) fits(req *txnRequest, maxOps, maxBytes int) bool {
	ops, bytes := len(t.ops), t.bytes
	for _, op := range req.ops {
		if _, ok := t.shared(op); !ok {
			ops, bytes = ops+1, bytes+opBytes(op)
		}
	}
	return ops <= maxOps && bytes <= maxBytes
}

func (t *txn) add(req *txnRequest) {
	i := len(t.at)
	t.at = append(t.at, nil)
	for _, op := range req.ops {
		if j, ok := t.shared(op); ok {
			t.owners[j] = append(t.owners[j], i)
			t.at[i] = append(t.at[i], j)
			continue
		}
		if op.KV != nil && op.KV.Verb == api.KVCheckSession {
			if t.checks == nil {
				t.checks = map[[2]string]int{}
			}
			t.checks[[2]string{op.KV.Key, op.KV.Session}] = len(t.ops)
		}
		t.at[i] = append(t.at[i], len(t.ops))
		t.owners = append(t.owners, []int{i})
		t.ops = append(t.ops, op)
		t.bytes += opBytes(op)
	}
}

// opBytes estimates the JSON body op adds to a transaction.
func opBytes(op *api.TxnOp) int {
	if op.KV == nil {
		return 0
	}
	return base64.StdEncoding.EncodedLen(len(op.KV.Value)) + len(op.KV.Key) + len(op.KV.Session) + 140
}

const (
	// batchTimeout bounds one attempt at a batched transaction.
	batchTimeout = 30 * time.Second
	// versionTimeout bounds the one read of the agent's version, when the
	// batcher needs it before anyone called Client.Agent.
	versionTimeout = 2 * time.Second
	// retryFirst and retryMax schedule the retries of a batch that Consul
	// answered 429 (a host over http_max_conns_per_client, a rate limit) or
	// 5xx (servers electing a leader): exponential, capped, jittered, for as
	// long as the requests' contexts allow.
	retryFirst = 50 * time.Millisecond
	retryMax   = 2 * time.Second
)

// batcher coalesces concurrent small transactions (a lock per acquire, an
// unlock per release) into transactions of up to the agent's limit of
// operations: 10,000 resources campaigning at once cost ~80 transactions, a
// Stop that releases 2,500 leaderships ~20, not one request each. A batch of
// one release goes as a plain `PUT ?release=` (cheaper for Consul than a
// transaction, and a lone handover waits on it).
//
// A transaction is all or nothing, so when some operations fail, their
// requests get their own errors and the rest are sent again without them. A
// batch answered 429 or 5xx is sent again after a backoff, for as long as
// its requests' contexts allow: those requests then fail with their
// context's error (and the last answer), never with the 429 itself.
//
// A lone request goes at once, in a batch of its own. While batches are in
// flight, what comes meanwhile is gathered into the next one; a backlog of
// more than one batch (a Stop releasing thousands) is sent by up to
// maxSenders batches at once, within the connection budget. No goroutine runs
// while nothing is pending.
type batcher struct {
	client  *api.Client
	mu      sync.Mutex
	pending []*txnRequest
	senders int             // goroutines sending batches
	busy    map[string]bool // keys of the requests in flight
	limits  txnLimits
}

// maxSenders is how many batches may be in flight at once. A request waits
// while another for its key is in flight (a release sent while the acquire
// is out), so that Consul applies each key's requests in the order they
// came.
const maxSenders = 4

// txnLimits is what the batcher knows of the agent's transaction limits.
type txnLimits struct {
	byVersion int  // from the agent's version; 0: not known
	asked     bool // the version was read, or tried once
	refused   int  // the limit since a transaction was refused as too long; 0: none was
	bytes     int  // the body size a batch stays under
}

func (l *txnLimits) ops() int {
	n := l.byVersion
	if n == 0 {
		n = txnOpsBefore114
	}
	if l.refused > 0 {
		n = min(n, l.refused)
	}
	return n
}

func newBatcher(client *api.Client) *batcher {
	return &batcher{client: client, busy: map[string]bool{}, limits: txnLimits{bytes: maxTxnBytes}}
}

type txnRequest struct {
	ctx  context.Context
	ops  api.TxnOps
	done func(txnResult) // called once, from the batcher's goroutine; must not block
	// release, for an unlock, is the same release as a plain PUT, sent
	// instead of a transaction when the request is alone in its batch.
	release *api.KVPair
}

type txnResult struct {
	results api.TxnResults
	err     error // a rolled-back request's reasons, or the transport error
}

// do runs ops, batched with whatever else is pending, and returns their
// results.
func (b *batcher) do(ctx context.Context, ops api.TxnOps, release *api.KVPair) (api.TxnResults, error) {
	answer := make(chan txnResult, 1)
	b.submit(&txnRequest{ctx: ctx, ops: ops, release: release, done: func(res txnResult) { answer <- res }})
	select {
	case res := <-answer:
		return res.results, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// submit queues req; req.done is called exactly once with its results (or
// its context's error, if it ends before they are in).
func (b *batcher) submit(req *txnRequest) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = append(b.pending, req)
	if b.senders == 0 {
		b.senders++
		go b.run()
	}
}

// learnVersion sets the operations limit from the agent's version.
func (b *batcher) learnVersion(v string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.limits.byVersion, b.limits.asked = txnOpsFor(v), true
}

// askVersion reads the agent's version if nobody has yet; a failed read is
// not repeated (the lower limit is right for every version, and the next
// Client.Agent sets it).
func (b *batcher) askVersion() {
	b.mu.Lock()
	asked := b.limits.asked
	b.limits.asked = true
	b.mu.Unlock()
	if asked {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), versionTimeout)
	defer cancel()
	if self, err := readAgentSelf(ctx, b.client); err == nil {
		b.learnVersion(self.Config.Version)
	}
}

// run sends batches until nothing it may send is pending, and starts
// another sender while a backlog remains.
func (b *batcher) run() {
	for {
		b.askVersion()
		b.mu.Lock()
		maxOps, maxBytes := b.limits.ops(), b.limits.bytes
		var batch, abandoned, waiting []*txnRequest
		var size txn
	gather:
		for i, req := range b.pending {
			switch {
			case req.ctx.Err() != nil:
				abandoned = append(abandoned, req) // given up before it was sent
			case b.busy[keyOf(req)]:
				waiting = append(waiting, req)
			case len(batch) > 0 && !size.fits(req, maxOps, maxBytes):
				waiting = append(waiting, b.pending[i:]...) // for the next batch
				break gather
			default:
				batch = append(batch, req)
				b.busy[keyOf(req)] = true
				size.add(req)
			}
		}
		b.pending = waiting
		done := len(batch) == 0
		if done {
			b.senders--
		} else if len(b.pending) > 0 && b.senders < maxSenders {
			b.senders++
			go b.run()
		}
		b.mu.Unlock()
		for _, req := range abandoned {
			req.done(txnResult{err: req.ctx.Err()})
		}
		if done {
			return
		}
		b.send(batch)
		b.mu.Lock()
		for _, req := range batch {
			delete(b.busy, keyOf(req))
		}
		b.mu.Unlock()
	}
}

// keyOf is the key a request's operations are about (each request is about
// one key: an acquire's lock, a release's unlock).
func keyOf(req *txnRequest) string { return req.ops[0].KV.Key }

// send runs batch as one transaction (or a lone release as a PUT) and
// answers its requests: on a rollback it answers the failing ones and sends
// the others again; on a 429 or 5xx it backs off and sends again; when the
// agent refuses the transaction as too long it lowers the limit and sends
// the batch in parts.
func (b *batcher) send(batch []*txnRequest) {
	failures := 0 // answers in a row worth retrying
	for len(batch) > 0 {
		t := txnOf(batch)
		ctx, cancel := batchContext(batch)
		var (
			ok   bool
			resp *api.TxnResponse
			err  error
		)
		if len(batch) == 1 && batch[0].release != nil {
			// Value and flags are written back as they are: PUT sets both.
			// A key the session does not hold is left alone (false), which
			// is what Release promises, so it is no error either.
			_, _, err = b.client.KV().Release(batch[0].release, (&api.WriteOptions{}).WithContext(ctx))
			ok, resp = true, &api.TxnResponse{}
		} else {
			ok, resp, err = sendTxn(ctx, b.client, t.ops)
		}
		cancel()
		switch {
		case err == nil && ok:
			// Every operation the batcher sends (lock, unlock, check-session)
			// has one result.
			for i, req := range batch {
				results := make(api.TxnResults, 0, len(t.at[i]))
				for _, j := range t.at[i] {
					if j < len(resp.Results) {
						results = append(results, resp.Results[j])
					}
				}
				req.done(txnResult{results: results})
			}
			return
		case err == nil:
			failures = 0
			batch = rolledBack(batch, t.owners, resp)
		case len(batch) > 1 && isTooLong(err):
			for _, part := range b.shorten(batch, len(t.ops), err) {
				b.send(part)
			}
			return
		case transient(err):
			failures++
			batch = b.backOff(batch, failures, err)
		default:
			for _, req := range batch {
				req.done(txnResult{err: err})
			}
			return
		}
	}
}

// rolledBack answers the requests whose operations failed, with Consul's
// reasons, and returns the others, to be sent again.
func rolledBack(batch []*txnRequest, owners [][]int, resp *api.TxnResponse) []*txnRequest {
	failed := map[int][]string{}
	for _, e := range resp.Errors {
		if e.OpIndex >= 0 && e.OpIndex < len(owners) {
			for _, i := range owners[e.OpIndex] {
				failed[i] = append(failed[i], e.What)
			}
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
	return rest
}

// isTooLong recognises the 413 answers that a shorter transaction avoids.
func isTooLong(err error) bool {
	var status api.StatusError
	if errors.As(err, &status) && status.Code == http.StatusRequestEntityTooLarge {
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "too many operations") || strings.Contains(msg, "too large")
}

// shorten lowers the limit the agent refused a transaction of ops operations
// for (too many operations: half of them; a body too large: half the bytes)
// and splits batch into parts under the new limits. Any other 413 (one
// value over kv_max_value_size) splits batch in two, so that only the
// request at fault fails.
func (b *batcher) shorten(batch []*txnRequest, ops int, err error) [][]*txnRequest {
	msg := strings.ToLower(err.Error())
	b.mu.Lock()
	switch {
	case strings.Contains(msg, "too many operations"):
		b.limits.refused = max(1, ops/2)
	case strings.Contains(msg, "request body") && strings.Contains(msg, "too large"): // txn_max_req_len
		b.limits.bytes = max(minTxnBytes, b.limits.bytes/2)
	}
	maxOps, maxBytes := b.limits.ops(), b.limits.bytes
	b.mu.Unlock()
	maxOps = min(maxOps, max(1, ops/2))
	var parts [][]*txnRequest
	var part []*txnRequest
	var size txn
	for _, req := range batch {
		if len(part) > 0 && !size.fits(req, maxOps, maxBytes) {
			parts, part, size = append(parts, part), nil, txn{}
		}
		part = append(part, req)
		size.add(req)
	}
	if len(parts) == 0 { // one request already: split it from the others anyway
		return [][]*txnRequest{part[:len(part)/2], part[len(part)/2:]}
	}
	return append(parts, part)
}

// transient reports whether Consul's answer err is worth sending the same
// transaction again for: 429, a 5xx that is not one of the classified
// errors, or a connection the agent reset or closed without an answer (how
// its connection limit's 429 can arrive while the client is still writing).
// A refused connection is not: the agent is down, and the caller hears it at
// once. Every operation the batcher
// sends can be repeated: a lock by the session that holds the key, an
// unlock, a read.
func transient(err error) bool {
	var status api.StatusError
	if errors.As(err, &status) {
		return (status.Code == http.StatusTooManyRequests || status.Code >= 500) && kindOf(err) == nil
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// backOff waits before the next attempt at batch, after failures answers
// in a row worth retrying, at most until every request in it has given up,
// and returns those still waiting; those whose context ended are answered
// with it and the last answer.
func (b *batcher) backOff(batch []*txnRequest, failures int, last error) []*txnRequest {
	d := backoff.Delay(retryFirst, retryMax, failures-1)
	d = d/2 + rand.N(d/2+1) // wide jitter: processes that met the same 429 do not retry in step
	ctx, cancel := batchContext(batch)
	sleep(ctx, d)
	cancel()
	rest := batch[:0:0]
	for _, req := range batch {
		if err := req.ctx.Err(); err != nil {
			req.done(txnResult{err: fmt.Errorf("gave up after %d attempts: %w; the last answer: %w", failures, err, last)})
		} else {
			rest = append(rest, req)
		}
	}
	return rest
}

// sendTxn sends ops as one transaction. ok is false when Consul rolled it
// back (409), with its reasons in resp.Errors; err is Consul's answer
// otherwise (an api.StatusError carries its status, unlike the api package's
// Txn).
func sendTxn(ctx context.Context, client *api.Client, ops api.TxnOps) (ok bool, resp *api.TxnResponse, err error) {
	resp = &api.TxnResponse{}
	answer := &txnAnswer{}
	_, err = client.Raw().Write("/v1/txn", ops, resp, (&api.WriteOptions{}).WithContext(context.WithValue(ctx, txnKey{}, answer)))
	if err == nil && answer.scanned {
		resp.Results = answer.results
	}
	var status api.StatusError
	if errors.As(err, &status) && status.Code == http.StatusConflict {
		if jsonErr := json.Unmarshal([]byte(status.Body), resp); jsonErr != nil {
			return false, nil, fmt.Errorf("the transaction was rolled back with an answer that does not decode: %v", jsonErr)
		}
		return false, resp, nil
	}
	if err != nil {
		return false, nil, err
	}
	return true, resp, nil
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
