package consul_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/devconsul"
)

var agent *devconsul.Agent

func TestMain(m *testing.M) { devconsul.Main(m, &agent) }

// countingTransport counts requests per path prefix.
type countingTransport struct {
	next http.RoundTripper
	txns atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasPrefix(r.URL.Path, "/v1/txn") {
		c.txns.Add(1)
	}
	return c.next.RoundTrip(r)
}

func newClient(t testing.TB, counter *countingTransport) *consul.Client {
	t.Helper()
	if counter == nil {
		return wrappedClient(t, nil)
	}
	return wrappedClient(t, func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter })
}

// wrappedClient is a client of the test agent whose transport wrap wraps
// (nil: none).
func wrappedClient(t testing.TB, wrap func(http.RoundTripper) http.RoundTripper) *consul.Client {
	t.Helper()
	client, err := consul.NewClient(consul.Config{Address: agent.URL(), WrapTransport: wrap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return client
}

func session(t testing.TB, client *consul.Client, delay time.Duration) string {
	t.Helper()
	id, err := client.CreateSession(context.Background(), consul.SessionSpec{Name: t.Name(), TTL: 10 * time.Second, LockDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestConcurrentAcquiresAreBatchedIntoFewTransactions(t *testing.T) {
	counter := &countingTransport{}
	client := newClient(t, counter)
	ctx := context.Background()
	ours, theirs := session(t, client, 0), session(t, client, 0)
	const n = 500
	// Every tenth key is already held by another session.
	for i := 0; i < n; i += 10 {
		if _, err := client.Acquire(ctx, fmt.Sprintf("batch/k%03d", i), theirs, nil); err != nil {
			t.Fatal(err)
		}
	}
	counter.txns.Store(0)
	var wg sync.WaitGroup
	errs := make([]error, n)
	tokens := make([]uint64, n)
	for i := range n {
		wg.Go(func() {
			entry, err := client.Acquire(ctx, fmt.Sprintf("batch/k%03d", i), ours, []byte("v"))
			errs[i], tokens[i] = err, entry.ModifyIndex
		})
	}
	wg.Wait()
	for i, err := range errs {
		switch {
		case i%10 == 0 && !errors.Is(err, consul.ErrLockHeld):
			t.Fatalf("key %d held by another session: %v; want ErrLockHeld", i, err)
		case i%10 != 0 && (err != nil || tokens[i] == 0):
			t.Fatalf("key %d: token %d, %v", i, tokens[i], err)
		}
	}
	t.Logf("%d acquires took %d transactions", n, counter.txns.Load())
	if txns := counter.txns.Load(); txns > n/4 {
		t.Fatalf("%d transactions for %d concurrent acquires; batching should need far fewer", txns, n)
	}
}

func TestLockDelayAndSessionErrorsAreClassified(t *testing.T) {
	client := newClient(t, nil)
	ctx := context.Background()
	holder := session(t, client, 5*time.Second)
	if _, err := client.Acquire(ctx, "classify/k", holder, nil); err != nil {
		t.Fatal(err)
	}
	if err := client.DestroySession(ctx, holder); err != nil {
		t.Fatal(err)
	}
	other := session(t, client, 0)
	if _, err := client.Acquire(ctx, "classify/k", other, nil); !errors.Is(err, consul.ErrLockDelay) {
		t.Fatalf("acquire inside lock-delay: %v; want ErrLockDelay", err)
	}
	if _, err := client.Acquire(ctx, "classify/other", holder, nil); !errors.Is(err, consul.ErrSessionGone) {
		t.Fatalf("acquire with a destroyed session: %v; want ErrSessionGone", err)
	}
	if err := client.RenewSession(ctx, holder); !errors.Is(err, consul.ErrSessionGone) {
		t.Fatalf("renew of a destroyed session: %v; want ErrSessionGone", err)
	}
	if _, err := client.CreateSession(ctx, consul.SessionSpec{TTL: 500 * time.Millisecond}); !errors.Is(err, consul.ErrRejected) ||
		!strings.Contains(err.Error(), "session_ttl_min") {
		t.Fatalf("a TTL below the server minimum: %v; want ErrRejected naming session_ttl_min", err)
	}
}

// A raft leader that applied the last holder's invalidation late keeps the
// key in lock-delay by its own clock and refuses even the holder's `lock`;
// its answer is made up here, the rest is the agent's.
func TestProclaimWaitsOutALockDelayThatRefusesTheHolder(t *testing.T) {
	rec := newRecorder()
	client := recordedClient(t, agent.URL(), 8, rec)
	holder := session(t, client, 0)
	key := fresh("proclaim") + "/k"
	acquired, err := client.Acquire(t.Context(), key, holder, []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	refusal := `{"Results":null,"Errors":[{"OpIndex":1,"What":"failed to lock key \"` + key + `\" due to lock delay"}]}`
	var proclaims atomic.Int64
	rec.answerWith(func(r *http.Request, ops, _ int) *http.Response {
		if ops == 2 && proclaims.Add(1) <= 2 {
			return fake(r, http.StatusConflict, refusal)
		}
		return nil
	})
	entry, err := client.Proclaim(t.Context(), key, holder, []byte("v2"))
	if err != nil {
		t.Fatalf("proclaim after two lock-delay refusals: %v", err)
	}
	if proclaims.Load() != 3 {
		t.Fatalf("%d proclaims sent; want the two refused and one more", proclaims.Load())
	}
	entries, _, err := client.ListPrefix(t.Context(), key, 0, 0)
	if err != nil || len(entries) != 1 {
		t.Fatalf("reading %s: %v, %d entries", key, err, len(entries))
	}
	if got := entries[0]; string(got.Value) != "v2" || got.Session != holder || got.LockIndex != acquired.LockIndex ||
		got.ModifyIndex != entry.ModifyIndex {
		t.Fatalf("after the proclaim %s is %q held by %s, lock index %d, modify index %d; want %q held by %s, lock index %d, modify index %d",
			key, got.Value, got.Session, got.LockIndex, got.ModifyIndex, "v2", holder, acquired.LockIndex, entry.ModifyIndex)
	}

	// A lock-delay that outlasts the caller's context is its answer.
	rec.answerWith(func(r *http.Request, ops, _ int) *http.Response {
		if ops == 2 {
			return fake(r, http.StatusConflict, refusal)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := client.Proclaim(ctx, key, holder, []byte("v3")); !errors.Is(err, consul.ErrLockDelay) {
		t.Fatalf("proclaim refused until its context ends: %v; want ErrLockDelay", err)
	}
}

func TestGuardedPutWritesOnlyForTheLeadershipThatHoldsTheLock(t *testing.T) {
	client := newClient(t, nil)
	ctx := context.Background()
	id := session(t, client, 0)
	first, err := client.Acquire(ctx, "guard/lock", id, nil)
	if err != nil {
		t.Fatal(err)
	}
	term1 := consul.Fence{Key: "guard/lock", Session: id, Token: first.ModifyIndex}
	if err := client.GuardedPut(ctx, term1, "guard/data", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := client.Release(ctx, "guard/lock", id, nil); err != nil {
		t.Fatal(err)
	}
	if err := client.GuardedPut(ctx, term1, "guard/data", []byte("two")); !errors.Is(err, consul.ErrLockLost) {
		t.Fatalf("guarded write after release: %v; want ErrLockLost", err)
	}
	// The same session leads again: a write of the first term is still stale.
	second, err := client.Acquire(ctx, "guard/lock", id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.GuardedPut(ctx, term1, "guard/data", []byte("three")); !errors.Is(err, consul.ErrLockLost) {
		t.Fatalf("guarded write of an earlier term: %v; want ErrLockLost", err)
	}
	term2 := consul.Fence{Key: "guard/lock", Session: id, Token: second.ModifyIndex}
	if err := client.GuardedPut(ctx, term2, "guard/data", []byte("four")); err != nil {
		t.Fatalf("guarded write of the current term: %v", err)
	}
	if e, _, _ := agent.Operator().Get(ctx, "guard/data"); string(e.Value) != "four" {
		t.Fatalf("data is %q; only the accepted writes may land", e.Value)
	}
}

// TestRelistTakesTheUnchangedEntriesFromTheLastReading: Relist answers as a
// fresh ListPrefix does, and the entries that did not change are those of
// the last reading, not decoded again.
func TestRelistTakesTheUnchangedEntriesFromTheLastReading(t *testing.T) {
	ctx := context.Background()
	client := newClient(t, nil)
	sid := session(t, client, 0)
	prefix := "relist/" + t.Name()
	acquire := func(key, value string) {
		t.Helper()
		if _, err := client.Acquire(ctx, prefix+"/"+key, sid, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"a", "b", "c", "d"} {
		acquire(k, "value of "+k)
	}
	first, index, err := client.ListPrefix(ctx, prefix, 0, 0)
	if err != nil || len(first) != 4 {
		t.Fatalf("first listing: %d entries, %v", len(first), err)
	}
	acquire("b", "b again")
	if err := client.Release(ctx, prefix+"/c", sid, []byte("c released")); err != nil {
		t.Fatal(err)
	}
	if ok, err := client.DeleteIfUnchanged(ctx, prefix+"/d", first[3].ModifyIndex); !ok || err != nil {
		t.Fatalf("delete d: %v, %v", ok, err)
	}
	acquire("e", "value of e")

	again, _, err := client.Relist(ctx, prefix, index, time.Second, first)
	if err != nil {
		t.Fatal(err)
	}
	fresh, _, err := client.ListPrefix(ctx, prefix, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(again) != fmt.Sprint(fresh) {
		t.Fatalf("relisted:\n%+v\nlisted afresh:\n%+v", again, fresh)
	}
	var got []string
	for _, e := range again {
		got = append(got, fmt.Sprintf("%s=%s held:%v", strings.TrimPrefix(e.Key, prefix+"/"), e.Value, e.Session == sid))
	}
	if want := "[a=value of a held:true b=b again held:true c=c released held:false e=value of e held:true]"; fmt.Sprint(got) != want {
		t.Fatalf("relisted %v; want %s", got, want)
	}
	if &again[0].Value[0] != &first[0].Value[0] {
		t.Error("a did not change, yet its value was decoded again")
	}
	if &again[1].Value[0] == &first[1].Value[0] {
		t.Error("b changed, yet its old value was kept")
	}
}

// BenchmarkListPrefix reads a shard of 1,000 held lock keys, as a key
// watcher does after every change under it: afresh, and again with the last
// reading (Relist), after a change of one key.
func BenchmarkListPrefix(b *testing.B) {
	ctx := context.Background()
	client := newClient(b, nil)
	sid := session(b, client, 0)
	prefix := "bench/" + b.Name()
	value := consul.EncodeValue(consul.Value{CandidateID: "fleet-c0.0", Node: "node-1", AcquiredAt: time.Now()})
	keys := make([]string, 1000)
	var wg sync.WaitGroup
	for i := range keys {
		keys[i] = fmt.Sprintf("%s/r%05d", prefix, i)
		wg.Go(func() {
			if _, err := client.Acquire(ctx, keys[i], sid, value); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	b.Run("afresh", func(b *testing.B) {
		for b.Loop() {
			if entries, _, err := client.ListPrefix(ctx, prefix, 0, 0); err != nil || len(entries) != len(keys) {
				b.Fatal(len(entries), err)
			}
		}
	})
	b.Run("relist", func(b *testing.B) {
		last, index, err := client.ListPrefix(ctx, prefix, 0, 0)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; b.Loop(); i++ {
			// One key changes, as one acquisition does.
			b.StopTimer()
			if _, err := client.Acquire(ctx, keys[i%len(keys)], sid, fmt.Appendf(nil, "%s %d", value, time.Now().UnixNano())); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if last, index, err = client.Relist(ctx, prefix, index, time.Second, last); err != nil || len(last) != len(keys) {
				b.Fatal(len(last), err)
			}
		}
	})
}

// gzipSeen counts the listings whose answers came gzipped.
type gzipSeen struct {
	next              http.RoundTripper
	listings, gzipped atomic.Int64
}

func (g *gzipSeen) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := g.next.RoundTrip(r)
	if err == nil && r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/kv/") {
		g.listings.Add(1)
		if resp.Uncompressed || resp.Header.Get("Content-Encoding") == "gzip" {
			g.gzipped.Add(1)
		}
	}
	return resp, err
}

// TestALocalAgentIsReadUncompressed: the agent gzips a listing for a client
// that accepts it; the client does not ask for that from an agent on this
// host.
func TestALocalAgentIsReadUncompressed(t *testing.T) {
	seen := &gzipSeen{}
	client := wrappedClient(t, func(rt http.RoundTripper) http.RoundTripper { seen.next = rt; return seen })
	ctx, prefix := context.Background(), "gzip/"+t.Name()
	id := session(t, client, 0)
	for i := range 50 {
		if _, err := client.Acquire(ctx, fmt.Sprintf("%s/k%02d", prefix, i), id, []byte(strings.Repeat("v", 100))); err != nil {
			t.Fatal(err)
		}
	}
	entries, _, err := client.ListPrefix(ctx, prefix, 0, 0)
	if err != nil || len(entries) != 50 {
		t.Fatalf("listed %d entries, %v; want 50", len(entries), err)
	}
	if seen.listings.Load() == 0 || seen.gzipped.Load() != 0 {
		t.Errorf("%d of %d listings came gzipped; want none", seen.gzipped.Load(), seen.listings.Load())
	}

	req, err := http.NewRequest(http.MethodGet, agent.URL()+"/v1/kv/"+prefix+"?recurse", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Content-Encoding"); got != "gzip" {
		t.Errorf("the same listing asked for gzipped came with Content-Encoding %q; want gzip (else this test shows nothing)", got)
	}
}

// txnAnswers keeps the bodies of the agent's answers to transactions.
type txnAnswers struct {
	next   http.RoundTripper
	mu     sync.Mutex
	bodies [][]byte
}

func (a *txnAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(r)
	if err != nil || r.URL.Path != "/v1/txn" || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.bodies = append(a.bodies, body)
	a.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// TestTransactionAnswersAreScanned: the client scans the agent's answers to
// its transactions (acquires and releases, batched) without handing them to
// encoding/json.
func TestTransactionAnswersAreScanned(t *testing.T) {
	answers := &txnAnswers{}
	client := wrappedClient(t, func(rt http.RoundTripper) http.RoundTripper { answers.next = rt; return answers })
	ctx, prefix := context.Background(), "scan/"+t.Name()
	id := session(t, client, 0)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			key := fmt.Sprintf("%s/k%02d", prefix, i)
			if e, err := client.Acquire(ctx, key, id, []byte("v")); err != nil || e.Session != id || e.ModifyIndex == 0 {
				t.Errorf("acquire %s: %+v, %v", key, e, err)
			}
			if err := client.Release(ctx, key, id, []byte("v")); err != nil {
				t.Errorf("release %s: %v", key, err)
			}
		})
	}
	wg.Wait()
	answers.mu.Lock()
	defer answers.mu.Unlock()
	if len(answers.bodies) == 0 {
		t.Fatal("no transaction was answered")
	}
	for _, body := range answers.bodies {
		if !consul.Scans(body) {
			t.Errorf("the agent's answer %q was not scanned", body)
		}
	}
}

func TestReleasedValueMarksOnlyConsulElectDocuments(t *testing.T) {
	held := consul.Value{CandidateID: "a", Node: "node-1", AcquiredAt: time.Unix(1700000000, 5).UTC(),
		Metadata: map[string]string{"zone": "b"}, Token: 42, From: "c"}
	got, err := consul.DecodeValue(consul.ReleasedValue(consul.EncodeValue(held)))
	if err != nil {
		t.Fatal(err)
	}
	want := held
	want.Version, want.Released = got.Version, true
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("released value %+v; want %+v", got, want)
	}
	for _, other := range []string{"", "plain text", `{"v":99}`} {
		if again := consul.ReleasedValue([]byte(other)); string(again) != other {
			t.Errorf("ReleasedValue(%q) = %q; want it unchanged", other, again)
		}
	}
}
