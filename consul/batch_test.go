package consul_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/devconsul"
)

// recorder is a client's transport seen from inside its budget: it counts
// requests by kind, answers by status, the operations of each transaction and
// the requests in flight; answer, when set, may answer a request itself.
type recorder struct {
	next   http.RoundTripper
	answer func(r *http.Request, ops, sent int) *http.Response

	mu sync.Mutex
	counts
}

type counts struct {
	txns, releases, agentSelfs int
	status                     map[int]int
	txnOps                     []int // operations of each transaction sent to the agent
	inFlight, maxInFlight      int
	polls, maxPolls            int // blocking queries
	nonLive, maxNonLive        int // all but renewals
}

func newRecorder() *recorder { return &recorder{counts: counts{status: map[int]int{}}} }

func (rec *recorder) wrap(rt http.RoundTripper) http.RoundTripper { rec.next = rt; return rec }

// answerWith sets answer; sent is how many transactions were sent, this
// one included.
func (rec *recorder) answerWith(answer func(r *http.Request, ops, sent int) *http.Response) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.answer = answer
}

func (rec *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	ops := 0
	if strings.HasSuffix(r.URL.Path, "/v1/txn") {
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		var list []json.RawMessage
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, fmt.Errorf("recorder: a transaction that is not a JSON list: %v", err)
		}
		ops = len(list)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	poll := r.URL.Query().Get("index") != "" && r.URL.Query().Get("index") != "0"
	live := strings.Contains(r.URL.Path, "/v1/session/renew/")
	rec.mu.Lock()
	switch {
	case ops > 0:
		rec.txns++
		rec.txnOps = append(rec.txnOps, ops)
	case r.Method == http.MethodPut && r.URL.Query().Has("release"):
		rec.releases++
	case strings.HasSuffix(r.URL.Path, "/v1/agent/self"):
		rec.agentSelfs++
	}
	rec.inFlight++
	rec.maxInFlight = max(rec.maxInFlight, rec.inFlight)
	if poll {
		rec.polls++
		rec.maxPolls = max(rec.maxPolls, rec.polls)
	}
	if !live {
		rec.nonLive++
		rec.maxNonLive = max(rec.maxNonLive, rec.nonLive)
	}
	answer, sent := rec.answer, len(rec.txnOps)
	rec.mu.Unlock()
	var once sync.Once
	finish := func() {
		once.Do(func() {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.inFlight--
			if poll {
				rec.polls--
			}
			if !live {
				rec.nonLive--
			}
		})
	}
	var resp *http.Response
	if answer != nil {
		resp = answer(r, ops, sent)
	}
	if resp == nil {
		var err error
		if resp, err = rec.next.RoundTrip(r); err != nil {
			finish()
			return nil, err
		}
	} else if r.Body != nil {
		r.Body.Close()
	}
	rec.mu.Lock()
	rec.status[resp.StatusCode]++
	rec.mu.Unlock()
	resp.Body = &finishingBody{ReadCloser: resp.Body, finish: finish}
	return resp, nil
}

type finishingBody struct {
	io.ReadCloser
	finish func()
}

func (b *finishingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.finish()
	}
	return n, err
}

func (b *finishingBody) Close() error { b.finish(); return b.ReadCloser.Close() }

func (rec *recorder) snapshot() counts {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	c := rec.counts
	c.txnOps, c.status = append([]int(nil), rec.txnOps...), maps.Clone(rec.status)
	return c
}

func (rec *recorder) reset() {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.txns, rec.releases, rec.agentSelfs, rec.txnOps, rec.status = 0, 0, 0, nil, map[int]int{}
	rec.maxInFlight, rec.maxPolls, rec.maxNonLive = rec.inFlight, rec.polls, rec.nonLive
}

// fake is an answer of the agent's kind that the agent did not send.
func fake(r *http.Request, status int, body string) *http.Response {
	return &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{"Content-Type": {"text/plain"}},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}
}

func recordedClient(t *testing.T, address string, maxConnections int, rec *recorder) *consul.Client {
	t.Helper()
	client, err := consul.NewClient(consul.Config{Address: address, MaxConnections: maxConnections, WrapTransport: rec.wrap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return client
}

// acquireAll acquires keys for session concurrently.
func acquireAll(t *testing.T, client *consul.Client, session string, keys []string) {
	t.Helper()
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i, key := range keys {
		wg.Go(func() { _, errs[i] = client.Acquire(t.Context(), key, session, []byte("acquired")) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("acquire %s: %v", keys[i], err)
		}
	}
}

// fresh is a key prefix of its own for each run of a test on the shared agent.
func fresh(name string) string { return fmt.Sprintf("%s-%x", name, time.Now().UnixNano()) }

func keysUnder(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s/k%05d", prefix, i)
	}
	return keys
}

// A release sent while its key's acquire is still out (a Stop during the
// acquisitions) must reach Consul after it, even when several batches are in
// flight at once: otherwise the acquire lands last and the key stays held.
func TestAReleaseFollowsItsKeysAcquireThroughABacklog(t *testing.T) {
	client := recordedClient(t, agent.URL(), 16, newRecorder())
	id := session(t, client, 0)
	prefix := fresh("order")
	keys := keysUnder(prefix, 2000)
	var wg sync.WaitGroup
	errs := make([]error, 2*len(keys))
	for i, key := range keys {
		wg.Add(2)
		client.AcquireAsync(t.Context(), key, id, []byte("acquired"), func(_ consul.Entry, err error) {
			errs[2*i] = err
			wg.Done()
		})
		client.ReleaseAsync(t.Context(), key, id, []byte("released"), func(err error) {
			errs[2*i+1] = err
			wg.Done()
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s of %s: %v", map[int]string{0: "acquire", 1: "release"}[i%2], keys[i/2], err)
		}
	}
	entries, _, err := client.ListPrefix(t.Context(), prefix+"/", 0, 0)
	if err != nil || len(entries) != len(keys) {
		t.Fatalf("listing the keys: %d of %d, %v", len(entries), len(keys), err)
	}
	for _, e := range entries {
		if e.Session != "" {
			t.Fatalf("%s is still held after its release: the release reached Consul before the acquire", e.Key)
		}
	}
}

func TestThousandsOfConcurrentReleasesAreBatchedWithoutTooManyRequests(t *testing.T) {
	rec := newRecorder()
	client := recordedClient(t, agent.URL(), 0, rec) // no budget: batching alone must do it
	ctx := t.Context()
	ours, theirs := session(t, client, 0), session(t, client, 0)
	const n = 3000
	prefix := fresh("release")
	keys := keysUnder(prefix, n)
	acquireAll(t, client, ours, keys)
	if _, err := client.Acquire(ctx, prefix+"/theirs", theirs, []byte("theirs")); err != nil {
		t.Fatal(err)
	}
	rec.reset()

	// A Stop with thousands of leaders, plus a key another session holds and
	// one that does not exist: neither is an error.
	all := append(keys[:n:n], prefix+"/theirs", prefix+"/missing")
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	start := time.Now()
	for i, key := range all {
		wg.Go(func() { errs[i] = client.Release(ctx, key, ours, []byte("last document "+key)) })
	}
	wg.Wait()
	took := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("release %s: %v", all[i], err)
		}
	}
	got := rec.snapshot()
	t.Logf("%d concurrent releases in %v: %d transactions, %d lone PUTs, answers %v, up to %d requests in flight",
		len(all), took, got.txns, got.releases, got.status, got.maxInFlight)
	if got.status[http.StatusTooManyRequests] != 0 {
		t.Fatalf("%d answers 429 to concurrent releases", got.status[http.StatusTooManyRequests])
	}
	if requests := got.txns + got.releases; requests > n/50 {
		t.Fatalf("%d requests for %d concurrent releases; they should be batched into transactions", requests, n)
	}
	for _, ops := range got.txnOps {
		if ops > 128 {
			t.Fatalf("a transaction of %d operations; Consul takes at most 128", ops)
		}
	}
	entries, _, err := client.ListPrefix(ctx, prefix+"/", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch {
		case e.Key == prefix+"/theirs":
			if e.Session != theirs || string(e.Value) != "theirs" {
				t.Fatalf("the key of another session was changed: %+v", e)
			}
		case e.Session != "":
			t.Fatalf("%s is still held by %s", e.Key, e.Session)
		case string(e.Value) != "last document "+e.Key || e.Flags != consul.KeyFlags:
			t.Fatalf("%s: value %q, flags %#x; the release must write back the value and KeyFlags", e.Key, e.Value, e.Flags)
		}
	}
	if len(entries) != n+1 {
		t.Fatalf("%d keys under %s/; want %d", len(entries), prefix, n+1)
	}

	// A release alone goes as one PUT ?release=.
	alone := prefix + "/alone"
	if _, err := client.Acquire(ctx, alone, ours, nil); err != nil {
		t.Fatal(err)
	}
	rec.reset()
	if err := client.Release(ctx, alone, ours, []byte("alone")); err != nil {
		t.Fatal(err)
	}
	if got := rec.snapshot(); got.releases != 1 || got.txns != 0 {
		t.Fatalf("a lone release took %d PUTs and %d transactions; want one PUT", got.releases, got.txns)
	}
	if e, _, _ := agent.Operator().Get(ctx, alone); e.Session != "" || string(e.Value) != "alone" || e.Flags != consul.KeyFlags {
		t.Fatalf("after a lone release: %+v", e)
	}
	if err := client.Release(ctx, alone, ours, nil); err != nil {
		t.Fatalf("releasing a key no longer held: %v; want no error", err)
	}
}

// TestConcurrentTransfersShareTheirSuccessorsCheck hands thousands of keys
// to a successor at once, as a Stop does: each transaction checks the
// successor's guard once, not once per key. Then a successor whose guard is
// gone fails only its own transfers.
func TestConcurrentTransfersShareTheirSuccessorsCheck(t *testing.T) {
	rec := newRecorder()
	client := recordedClient(t, agent.URL(), 0, rec)
	ctx := t.Context()
	ours, b, c := session(t, client, 0), session(t, client, 0), session(t, client, 0)
	const n, mixed = 2000, 200
	prefix := fresh("transfer")
	keys := keysUnder(prefix, n+mixed)
	acquireAll(t, client, ours, keys)
	toB, toC := consul.Successor{Session: b, Guard: prefix + "-guard/b"}, consul.Successor{Session: c, Guard: prefix + "-guard/c"}
	if _, err := client.Acquire(ctx, toB.Guard, b, nil); err != nil {
		t.Fatal(err)
	}
	transfer := func(keys []string, to func(i int) consul.Successor) []error {
		errs := make([]error, len(keys))
		var wg sync.WaitGroup
		for i, key := range keys {
			wg.Go(func() { _, errs[i] = client.Transfer(ctx, key, ours, to(i), []byte("handed over")) })
		}
		wg.Wait()
		return errs
	}

	rec.reset()
	for i, err := range transfer(keys[:n], func(int) consul.Successor { return toB }) {
		if err != nil {
			t.Fatalf("transfer of %s: %v", keys[i], err)
		}
	}
	got := rec.snapshot()
	t.Logf("%d concurrent transfers to one successor: %d transactions of %v operations", n, got.txns, got.txnOps)
	for _, ops := range got.txnOps {
		if ops > 128 {
			t.Fatalf("a transaction of %d operations; Consul takes at most 128", ops)
		}
	}
	// Two operations a key and one check a transaction: ~32 transactions;
	// at three operations a key, 47 at least.
	if got.txns >= 40 {
		t.Fatalf("%d transactions for %d transfers; the successor's check is not shared", got.txns, n)
	}

	// Half to b, half to c: c's are refused, b's go through.
	errs := transfer(keys[n:], func(i int) consul.Successor {
		if i%2 == 1 {
			return toC
		}
		return toB
	})
	for i, err := range errs {
		if refused := i%2 == 1; errors.Is(err, consul.ErrTransferRefused) != refused || (err != nil) != refused {
			t.Fatalf("transfer of %s: %v; refused: want %v", keys[n+i], err, refused)
		}
	}
	entries, _, err := client.ListPrefix(ctx, prefix+"/", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]int{}
	for _, e := range entries {
		held[e.Session]++
	}
	if held[b] != n+mixed/2 || held[ours] != mixed/2 || held[c] != 0 {
		t.Fatalf("after the transfers: %d held by b, %d still ours, %d by c; want %d, %d, 0", held[b], held[ours], held[c], n+mixed/2, mixed/2)
	}
}

func TestTheBudgetBoundsRequestsInFlightWhileRenewalsGoThrough(t *testing.T) {
	rec := newRecorder()
	const budget = 5 // long polls ≤ 3, everything but renewals ≤ 4
	client := recordedClient(t, agent.URL(), budget, rec)
	ctx := t.Context()
	id := session(t, client, 0)
	if err := agent.Operator().Put(ctx, "budget/k", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	_, index, err := client.ListPrefix(ctx, "budget/", 0, 0)
	if err != nil {
		t.Fatal(err)
	}

	// Four long polls: three are parked at the agent, one waits its turn.
	polls, stopPolls := context.WithCancel(ctx)
	defer stopPolls()
	var pollers sync.WaitGroup
	for range 4 {
		pollers.Go(func() { _, _, _ = client.ListPrefix(polls, "budget/", index, time.Minute) })
	}
	deadline := time.Now().Add(5 * time.Second)
	for rec.snapshot().polls < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if got := rec.snapshot(); got.polls != 3 {
		t.Fatalf("%d long polls in flight; want 3 (MaxConnections−2)", got.polls)
	}

	// A burst of reads queues for the one slot left to them; renewals pass it.
	const burst = 1000
	var readers sync.WaitGroup
	var readErrs, readsDone atomic.Int64
	start := time.Now()
	for range burst {
		readers.Go(func() {
			if _, err := client.SessionInfo(ctx, id); err != nil {
				readErrs.Add(1)
			}
			readsDone.Add(1)
		})
	}
	time.Sleep(20 * time.Millisecond)
	var slowest time.Duration
	for range 5 {
		began := time.Now()
		if err := client.RenewSession(ctx, id); err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(began))
	}
	doneAtRenewals := readsDone.Load()
	readers.Wait()
	burstTook := time.Since(start)
	stopPolls()
	pollers.Wait()

	got := rec.snapshot()
	t.Logf("budget %d: up to %d requests in flight (%d long polls, %d other than renewals); "+
		"slowest of 5 renewals %v, %d/%d reads done by then, the burst took %v",
		budget, got.maxInFlight, got.maxPolls, got.maxNonLive, slowest, doneAtRenewals, burst, burstTook)
	if readErrs.Load() != 0 {
		t.Fatalf("%d reads failed", readErrs.Load())
	}
	if got.maxInFlight > budget || got.maxPolls > budget-2 || got.maxNonLive > budget-1 {
		t.Fatalf("in flight: %d (long polls %d, all but renewals %d); the budget allows %d, %d, %d",
			got.maxInFlight, got.maxPolls, got.maxNonLive, budget, budget-2, budget-1)
	}
	if slowest > time.Second {
		t.Fatalf("a renewal took %v behind a burst of reads and three long polls", slowest)
	}
	if doneAtRenewals == burst {
		t.Logf("the burst was over before the renewals ended; their promptness was not tested against it")
	}
}

func TestTransactionsHoldAsManyOperationsAsTheAgentVersionAllows(t *testing.T) {
	rec := newRecorder()
	client := recordedClient(t, agent.URL(), 8, rec)
	id := session(t, client, 0)
	acquireAll(t, client, id, keysUnder(fresh("version"), 600))
	got := rec.snapshot()
	largest := 0
	for _, ops := range got.txnOps {
		largest = max(largest, ops)
	}
	t.Logf("Consul %s: %d transactions, the largest of %d operations; %d reads of /v1/agent/self",
		devconsul.Version(), got.txns, largest, got.agentSelfs)
	if largest != 128 {
		t.Fatalf("the largest transaction held %d operations; Consul %s takes 128", largest, devconsul.Version())
	}
	if got.agentSelfs != 1 {
		t.Fatalf("%d reads of the agent's version; want one", got.agentSelfs)
	}
}

func TestTooManyOperationsHalvesTheLimitAndSendsAgain(t *testing.T) {
	rec := newRecorder()
	var lastRefused atomic.Int64 // transactions sent up to the last refused one
	rec.answerWith(func(r *http.Request, ops, sent int) *http.Response {
		// An agent that takes 64 operations, as before Consul 1.14.
		if ops > 64 {
			lastRefused.Store(int64(sent))
			return fake(r, http.StatusRequestEntityTooLarge, fmt.Sprintf("Transaction contains too many operations (%d > 64)", ops))
		}
		return nil
	})
	client := recordedClient(t, agent.URL(), 8, rec)
	id := session(t, client, 0)
	prefix := fresh("halve")
	keys := keysUnder(prefix, 500)
	acquireAll(t, client, id, keys) // every acquire succeeds: none fails for the refusals
	got := rec.snapshot()
	// Only the batches already formed when the first refusal came back (one
	// per sender at most) are refused.
	if refused := got.status[http.StatusRequestEntityTooLarge]; refused == 0 || refused > 4 {
		t.Fatalf("%d answers 413; want 1 to 4, one per batch in flight at the first", refused)
	}
	after := got.txnOps[lastRefused.Load():]
	for _, ops := range after {
		if ops > 64 {
			t.Fatalf("after the refusals of more than 64 operations, a transaction of %d: %v", ops, after)
		}
	}
	t.Logf("transactions of %v operations, the last refused at %d", got.txnOps, lastRefused.Load())
	entries, _, err := client.ListPrefix(t.Context(), prefix+"/", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Session != id {
			t.Fatalf("%s is not held after its acquire succeeded", e.Key)
		}
	}
}

func TestBatchesRideOutTooManyRequestsAndServerErrors(t *testing.T) {
	rec := newRecorder()
	var refusals atomic.Int64
	rec.answerWith(func(r *http.Request, _, _ int) *http.Response {
		if !strings.HasSuffix(r.URL.Path, "/v1/txn") && !r.URL.Query().Has("release") {
			return nil
		}
		switch refusals.Add(1) {
		case 1, 2, 4:
			return fake(r, http.StatusTooManyRequests, "Your IP is issuing too many concurrent connections, please rate limit your calls")
		case 3:
			return fake(r, http.StatusInternalServerError, "No cluster leader")
		}
		return nil
	})
	client := recordedClient(t, agent.URL(), 8, rec)
	id := session(t, client, 0)
	keys := keysUnder(fresh("ride"), 300)
	start := time.Now()
	acquireAll(t, client, id, keys)
	var wg sync.WaitGroup
	errs := make([]error, len(keys))
	for i, key := range keys {
		wg.Go(func() { errs[i] = client.Release(t.Context(), key, id, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("release %s: %v", keys[i], err)
		}
	}
	got := rec.snapshot()
	t.Logf("300 acquires and releases through 3 answers 429 and one 500 in %v: %d transactions, %d PUTs",
		time.Since(start), got.txns, got.releases)
	if got.status[http.StatusTooManyRequests] != 3 || got.status[http.StatusInternalServerError] != 1 {
		t.Fatalf("answers %v; the test needs three 429 and one 500", got.status)
	}

	// An agent that keeps answering 429: the request ends with its context,
	// a transient error, not the 429 as if the acquire had failed.
	rec.answerWith(func(r *http.Request, _, _ int) *http.Response {
		if strings.HasSuffix(r.URL.Path, "/v1/txn") {
			return fake(r, http.StatusTooManyRequests, "rate limit exceeded")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err := client.Acquire(ctx, fresh("ride")+"/refused", id, nil)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !consul.Retryable(err) || took > 3*time.Second {
		t.Fatalf("acquire while Consul answers 429: %v after %v; want the context's deadline, retryable, soon after it", err, took)
	}
	t.Logf("acquire while Consul answers 429: %v after %v", err, took)
}

func TestUnixSocketClientsKeepTheBudget(t *testing.T) {
	dir, err := os.MkdirTemp("", "ce-sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "http.sock")
	devconsul.ForTest(t, devconsul.Config{ExtraHCL: fmt.Sprintf("addresses {\n  http = \"127.0.0.1 unix://%s\"\n}\n", socket)})
	rec := newRecorder()
	client := recordedClient(t, "unix://"+socket, 2, rec)
	ctx := t.Context()
	id := session(t, client, 0)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 100 {
		wg.Go(func() {
			if _, err := client.SessionInfo(ctx, id); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	got := rec.snapshot()
	if failed.Load() != 0 {
		t.Fatalf("%d of 100 reads over the unix socket failed", failed.Load())
	}
	if got.maxInFlight > 2 || got.status[http.StatusOK] < 100 {
		t.Fatalf("over the unix socket: %d answers 200 seen by WrapTransport, up to %d in flight; want 100+, at most 2",
			got.status[http.StatusOK], got.maxInFlight)
	}
}
