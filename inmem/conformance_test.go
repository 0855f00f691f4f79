package inmem_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/inmem"
	"github.com/excalibur/consul-elect/internal/devconsul"
)

// The conformance table: the semantics the engine relies on, asserted at
// the Backend level against a real Consul agent and against the Store. A row
// that passes on Consul and fails in memory is a bug of this package.

// lockService is what both a consul.Client and a Store offer: the engine's
// calls, a leader's guarded writes and the fast-failover check's update.
type lockService interface {
	actors.Backend
	GuardedPut(ctx context.Context, fence consul.Fence, key string, value []byte) error
	UpdateCheck(ctx context.Context, id, status, output string) error
}

// operator is an operator's hands on the service: a devconsul.Operator on
// the agent, or the Store itself.
type operator interface {
	Get(ctx context.Context, key string) (consul.Entry, bool, error)
	Put(ctx context.Context, key string, value []byte, flags uint64) error
	Delete(ctx context.Context, key string) error
	RegisterTTLCheck(ctx context.Context, id, serviceID string, ttl time.Duration, status string) error
	DeregisterCheck(ctx context.Context, id string) error
}

var (
	_ lockService = (*consul.Client)(nil)
	_ lockService = (*inmem.Store)(nil)
	_ operator    = (*devconsul.Operator)(nil)
	_ operator    = (*inmem.Store)(nil)
)

// service is one backend set up for one row.
type service struct {
	lockService
	op     operator
	node   string
	prefix string // keys of this row
}

func (s *service) key(name string) string { return s.prefix + name }

var rows atomic.Int64

// services start each backend for a row; the agent is TestMain's.
var services = []struct {
	name  string
	start func(t *testing.T) *service
}{
	{"consul", func(t *testing.T) *service {
		client, err := consul.NewClient(consul.Config{Address: agent.URL()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(client.Close)
		return &service{lockService: client, op: agent.Operator(), node: agent.NodeName(), prefix: fmt.Sprintf("conformance/%d/", rows.Add(1))}
	}},
	{"inmem", func(t *testing.T) *service {
		// The dev agent's session_ttl_min is 1s.
		store := newStore(t, inmem.WithMinSessionTTL(time.Second))
		return &service{lockService: store, op: store, node: inmem.DefaultNode, prefix: "conformance/"}
	}},
}

var conformance = []struct {
	name string
	run  func(t *testing.T, s *service)
}{
	{"AcquireAnswersWithTheAcquiringWrite", acquireAnswersWithTheWrite},
	{"RefusalsAreClassified", refusalsAreClassified},
	{"ValuesAreLimitedLikeConsul", valuesAreLimited},
	{"OversizedTransactionIsErrRejected", oversizedTransactionRejected},
	{"ConcurrentAcquiresAreEachJudgedAlone", concurrentAcquiresJudgedAlone},
	{"GuardedPutWritesOnlyForTheLeadershipOfTheFence", guardedPutFences},
	{"ReleaseKeepsLockIndexAndHasNoLockDelay", releaseHasNoLockDelay},
	{"TransferHandsTheKeyToALiveSuccessorInOneWrite", transferHandsTheKeyOver},
	{"DestroyStartsALockDelayThatOutlivesADelete", destroyStartsLockDelay},
	{"DeletedKeyRestartsLockIndex", deletedKeyRestartsLockIndex},
	{"PlainPutKeepsTheSessionAndResetsLockIndex", plainPutKeepsTheSession},
	{"BlockingListWakesOnlyForItsPrefix", blockingListWakesForItsPrefix},
	{"EmptyPrefixFollowsTheKVIndex", emptyPrefixFollowsTheKVIndex},
	{"SessionExpiresAtTwiceItsTTL", sessionExpiresAtTwiceTTL},
	{"SessionCreationIsRefusedLikeConsul", sessionCreationRefused},
	{"SessionBoundToACriticalCheckIsErrRejected", criticalCheckRefusesSession},
	{"CriticalCheckInvalidatesBoundSessionsWithLockDelay", criticalCheckInvalidates},
	{"NodeCheckBlocksUntilACheckChanges", nodeCheckBlocks},
}

func TestBackendConformance(t *testing.T) {
	for _, backend := range services {
		for _, row := range conformance {
			t.Run(backend.name+"/"+row.name, func(t *testing.T) { row.run(t, backend.start(t)) })
		}
	}
}

func session(t *testing.T, s *service, spec consul.SessionSpec) string {
	t.Helper()
	if spec.Node == "" {
		spec.Node = s.node
	}
	id, err := s.CreateSession(ctxFor(t), spec)
	if err != nil {
		t.Fatalf("CreateSession(%+v): %v", spec, err)
	}
	t.Cleanup(func() { _ = s.DestroySession(context.Background(), id) })
	return id
}

func lock(t *testing.T, s *service, key, id, value string) consul.Entry {
	t.Helper()
	e, err := s.Acquire(ctxFor(t), key, id, []byte(value))
	if err != nil {
		t.Fatalf("Acquire(%s): %v", key, err)
	}
	return e
}

func read(t *testing.T, s *service, key string) consul.Entry {
	t.Helper()
	e, ok, err := s.op.Get(ctxFor(t), key)
	if err != nil || !ok {
		t.Fatalf("Get(%s): ok=%v, %v", key, ok, err)
	}
	return e
}

func alive(t *testing.T, s *service, id string) bool {
	t.Helper()
	_, err := s.SessionInfo(ctxFor(t), id)
	if err != nil && !errors.Is(err, consul.ErrSessionGone) {
		t.Fatal(err)
	}
	return err == nil
}

func acquireAnswersWithTheWrite(t *testing.T, s *service) {
	id := session(t, s, consul.SessionSpec{TTL: time.Minute})
	k := s.key("a")
	got := lock(t, s, k, id, "v1")
	if stored := read(t, s, k); !sameEntry(stored, got) || got.LockIndex != 1 || got.Flags != consul.KeyFlags || got.Session != id {
		t.Fatalf("Acquire answered %+v; stored %+v", got, stored)
	}
	again := lock(t, s, k, id, "v2")
	if again.ModifyIndex <= got.ModifyIndex || again.LockIndex != 1 {
		t.Fatalf("re-lock with a new value: %+v after %+v", again, got)
	}
	if same := lock(t, s, k, id, "v2"); same.ModifyIndex != again.ModifyIndex {
		t.Fatalf("a re-lock that changes nothing moved ModifyIndex %d → %d", again.ModifyIndex, same.ModifyIndex)
	}
	if info, err := s.SessionInfo(ctxFor(t), id); err != nil || info.Node != s.node || info.TTL != time.Minute {
		t.Fatalf("SessionInfo: %+v, %v", info, err)
	}
}

func refusalsAreClassified(t *testing.T, s *service) {
	holder := session(t, s, consul.SessionSpec{TTL: time.Minute})
	other := session(t, s, consul.SessionSpec{TTL: time.Minute})
	k := s.key("k")
	lock(t, s, k, holder, "")
	_, err := s.Acquire(ctxFor(t), k, other, nil)
	wantKind(t, err, consul.ErrLockHeld)
	unknown := "9f1c7a52-5d3e-4c1b-9a3f-0123456789ab"
	_, err = s.Acquire(ctxFor(t), s.key("free"), unknown, nil)
	wantKind(t, err, consul.ErrSessionGone)
	wantKind(t, s.RenewSession(ctxFor(t), unknown), consul.ErrSessionGone)
	if err := s.DestroySession(ctxFor(t), unknown); err != nil {
		t.Fatalf("destroying an unknown session: %v; want nil", err)
	}
	if err := s.Release(ctxFor(t), k, other, nil); err != nil {
		t.Fatalf("releasing a key held by another session: %v; want nil", err)
	}
}

// maxLockValue is the largest value an acquire of key by session can carry:
// the transaction's body, where the value is base64, is at most 512 KiB.
func maxLockValue(key, session string) int {
	room := 512*1024 - len(key) - len(session) - 136
	return room / 4 * 3
}

func valuesAreLimited(t *testing.T, s *service) {
	id := session(t, s, consul.SessionSpec{TTL: time.Minute})
	if err := s.op.Put(ctxFor(t), s.key("put"), make([]byte, 512*1024), 0); err != nil {
		t.Fatalf("a 512 KiB Put: %v", err)
	}
	wantKind(t, s.op.Put(ctxFor(t), s.key("put"), make([]byte, 512*1024+1), 0), consul.ErrRejected)
	k := s.key("lock")
	largest := maxLockValue(k, id)
	if _, err := s.Acquire(ctxFor(t), k, id, make([]byte, largest)); err != nil {
		t.Fatalf("an acquire with a %d-byte value: %v", largest, err)
	}
	before := read(t, s, k)
	if _, err := s.Acquire(ctxFor(t), k, id, make([]byte, largest+3)); err == nil {
		t.Fatalf("an acquire with a %d-byte value went through; its transaction is over 512 KiB", largest+3)
	}
	if after := read(t, s, k); after.ModifyIndex != before.ModifyIndex {
		t.Fatal("the refused acquire wrote the key")
	}
}

// oversizedTransactionRejected: a request that can never fit is rejected,
// not retried as if Consul were unreachable.
func oversizedTransactionRejected(t *testing.T, s *service) {
	id := session(t, s, consul.SessionSpec{TTL: time.Minute})
	k := s.key("lock")
	_, err := s.Acquire(ctxFor(t), k, id, make([]byte, maxLockValue(k, id)+3))
	wantKind(t, err, consul.ErrRejected)
}

// concurrentAcquiresJudgedAlone: acquires that each fit in a transaction
// succeed however many are made at once.
func concurrentAcquiresJudgedAlone(t *testing.T, s *service) {
	id := session(t, s, consul.SessionSpec{TTL: time.Minute})
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Acquire(ctxFor(t), s.key(fmt.Sprintf("many/%d", i)), id, make([]byte, 20*1024)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed == 1 {
			t.Errorf("an acquire of a 20 KiB value: %v", err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of 60 concurrent acquires failed", failed)
	}
}

func guardedPutFences(t *testing.T, s *service) {
	holder := session(t, s, consul.SessionSpec{TTL: time.Minute})
	other := session(t, s, consul.SessionSpec{TTL: time.Minute})
	lockKey, data := s.key("lock"), s.key("data")
	term := lock(t, s, lockKey, holder, "first term")
	fence := consul.Fence{Key: lockKey, Session: holder, Token: term.ModifyIndex}
	if err := s.GuardedPut(ctxFor(t), fence, data, []byte("1")); err != nil {
		t.Fatal(err)
	}
	wantKind(t, s.GuardedPut(ctxFor(t), consul.Fence{Key: lockKey, Session: other}, data, nil), consul.ErrLockLost)
	wantKind(t, s.GuardedPut(ctxFor(t), consul.Fence{Key: s.key("absent"), Session: holder}, data, nil), consul.ErrLockLost)
	lock(t, s, lockKey, holder, "second term")
	wantKind(t, s.GuardedPut(ctxFor(t), fence, data, []byte("2")), consul.ErrLockLost)
	if e := read(t, s, data); string(e.Value) != "1" {
		t.Fatalf("data is %q; a stale fence wrote it", e.Value)
	}
}

// transferer is what both backends offer for a handover in one write.
type transferer interface {
	Transfer(ctx context.Context, key, session string, to consul.Successor, value []byte) (consul.Entry, error)
}

func transferHandsTheKeyOver(t *testing.T, s *service) {
	a := session(t, s, consul.SessionSpec{TTL: time.Minute})
	b := session(t, s, consul.SessionSpec{TTL: time.Minute})
	k, guard := s.key("lock"), s.key("guard-b")
	lock(t, s, guard, b, "b is here")
	first := lock(t, s, k, a, "a leads")
	tr := s.lockService.(transferer)
	to := consul.Successor{Session: b, Guard: guard}

	got, err := tr.Transfer(ctxFor(t), k, a, to, []byte("b leads"))
	if err != nil {
		t.Fatal(err)
	}
	stored := read(t, s, k)
	if !sameEntry(stored, got) || got.Session != b || got.LockIndex != first.LockIndex+1 || got.ModifyIndex <= first.ModifyIndex ||
		string(stored.Value) != "b leads" || stored.Flags != consul.KeyFlags {
		t.Fatalf("Transfer answered %+v; stored %+v; a's lock was %+v", got, stored, first)
	}
	// a holds it no more: nothing changes.
	wantKind(t, errOf(tr.Transfer(ctxFor(t), k, a, to, nil)), consul.ErrLockLost)

	// A successor that left the registry, or whose session is gone, is
	// refused, and the key stays with its holder.
	c := session(t, s, consul.SessionSpec{TTL: time.Minute})
	if err := s.Release(ctxFor(t), guard, b, []byte("b left")); err != nil {
		t.Fatal(err)
	}
	wantKind(t, errOf(tr.Transfer(ctxFor(t), k, b, consul.Successor{Session: c, Guard: guard}, nil)), consul.ErrTransferRefused)
	lock(t, s, guard, c, "c is here")
	if err := s.DestroySession(ctxFor(t), c); err != nil {
		t.Fatal(err)
	}
	lock(t, s, guard, b, "b holds c's guard")
	wantKind(t, errOf(tr.Transfer(ctxFor(t), k, b, consul.Successor{Session: c, Guard: guard}, nil)), consul.ErrTransferRefused)
	if after := read(t, s, k); !sameEntry(after, stored) {
		t.Fatalf("refused transfers changed the key: %+v, was %+v", after, stored)
	}

	// The value fits as Consul counts the transaction.
	guardA := s.key("guard-a")
	lock(t, s, guardA, a, "a is here")
	largest := (512*1024 - 2*len(k) - len(b) - len(guardA) - 2*len(a) - 401) / 4 * 3
	if _, err := tr.Transfer(ctxFor(t), k, b, consul.Successor{Session: a, Guard: guardA}, make([]byte, largest)); err != nil {
		t.Fatalf("a transfer with a %d-byte value: %v", largest, err)
	}
	wantKind(t, errOf(tr.Transfer(ctxFor(t), k, a, consul.Successor{Session: b, Guard: guard}, make([]byte, largest+3))), consul.ErrRejected)
}

func errOf(_ consul.Entry, err error) error { return err }

func releaseHasNoLockDelay(t *testing.T, s *service) {
	first := session(t, s, consul.SessionSpec{TTL: time.Minute, LockDelay: time.Minute})
	second := session(t, s, consul.SessionSpec{TTL: time.Minute})
	k := s.key("k")
	held := lock(t, s, k, first, "")
	if err := s.Release(ctxFor(t), k, first, []byte("last")); err != nil {
		t.Fatal(err)
	}
	if e := read(t, s, k); e.Session != "" || e.LockIndex != 1 || string(e.Value) != "last" || e.ModifyIndex <= held.ModifyIndex {
		t.Fatalf("after release: %+v", e)
	}
	if got := lock(t, s, k, second, ""); got.LockIndex != 2 {
		t.Fatalf("LockIndex %d after the second acquisition; want 2", got.LockIndex)
	}
}

func destroyStartsLockDelay(t *testing.T, s *service) {
	const delay = time.Second
	old := session(t, s, consul.SessionSpec{TTL: time.Minute, LockDelay: delay})
	next := session(t, s, consul.SessionSpec{TTL: time.Minute})
	k := s.key("k")
	held := lock(t, s, k, old, "doc")
	destroyed := time.Now()
	if err := s.DestroySession(ctxFor(t), old); err != nil {
		t.Fatal(err)
	}
	if e := read(t, s, k); e.Session != "" || string(e.Value) != "doc" || e.ModifyIndex <= held.ModifyIndex {
		t.Fatalf("after destroy the key is %+v; want released by a new write, value kept", e)
	}
	_, err := s.Acquire(ctxFor(t), k, "9f1c7a52-5d3e-4c1b-9a3f-0123456789ab", nil)
	wantKind(t, err, consul.ErrLockDelay) // checked before the session
	if err := s.op.Delete(ctxFor(t), k); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := s.Acquire(ctxFor(t), k, next, nil)
		if err == nil {
			break
		}
		wantKind(t, err, consul.ErrLockDelay)
		time.Sleep(20 * time.Millisecond)
	}
	if waited := time.Since(destroyed); waited < delay {
		t.Fatalf("locked %s after the destroy, inside the %s lock-delay", waited, delay)
	}
}

func deletedKeyRestartsLockIndex(t *testing.T, s *service) {
	id := session(t, s, consul.SessionSpec{TTL: time.Minute})
	k := s.key("k")
	lock(t, s, k, id, "")
	if err := s.Release(ctxFor(t), k, id, nil); err != nil {
		t.Fatal(err)
	}
	second := lock(t, s, k, id, "")
	if err := s.op.Delete(ctxFor(t), k); err != nil {
		t.Fatal(err)
	}
	if again := lock(t, s, k, id, ""); again.LockIndex != 1 || second.LockIndex != 2 || again.ModifyIndex <= second.ModifyIndex {
		t.Fatalf("before the delete %+v, after %+v; want LockIndex 2 then 1, ModifyIndex growing", second, again)
	}
}

func plainPutKeepsTheSession(t *testing.T, s *service) {
	id := session(t, s, consul.SessionSpec{TTL: time.Minute})
	k := s.key("k")
	lock(t, s, k, id, "")
	if err := s.op.Put(ctxFor(t), k, []byte("foreign"), 7); err != nil {
		t.Fatal(err)
	}
	if e := read(t, s, k); e.Session != id || e.Flags != 7 || e.LockIndex != 0 || string(e.Value) != "foreign" {
		t.Fatalf("after a plain put: %+v; want the session kept and LockIndex reset", e)
	}
}

func blockingListWakesForItsPrefix(t *testing.T, s *service) {
	ctx := ctxFor(t)
	if err := s.op.Put(ctx, s.key("p/a"), []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	entries, index, err := s.ListPrefix(ctx, s.key("p/"), 0, 0)
	if err != nil || len(entries) != 1 || index != entries[0].ModifyIndex {
		t.Fatalf("ListPrefix at 0: %+v, %d, %v", entries, index, err)
	}
	answer := listAsync(ctx, s, s.key("p/"), index, time.Minute)
	if err := s.op.Put(ctx, s.key("q/other"), nil, 0); err != nil {
		t.Fatal(err)
	}
	quiet(t, answer, 300*time.Millisecond, "a write under another prefix")
	if err := s.op.Delete(ctx, s.key("p/a")); err != nil {
		t.Fatal(err)
	}
	got := receive(t, answer)
	if got.err != nil || len(got.entries) != 0 || got.index <= index {
		t.Fatalf("woken by a delete under the prefix: %+v (was at %d)", got, index)
	}
	start := time.Now()
	timedOut := receive(t, listAsync(ctx, s, s.key("p/"), got.index, 500*time.Millisecond))
	if waited := timedOut.at.Sub(start); timedOut.err != nil || timedOut.index != got.index || waited < 500*time.Millisecond {
		t.Fatalf("after the wait: %+v after %s; want the same index %d after 500ms", timedOut, waited, got.index)
	}
}

func emptyPrefixFollowsTheKVIndex(t *testing.T, s *service) {
	ctx := ctxFor(t)
	_, index, err := s.ListPrefix(ctx, s.key("nothing/"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	answer := listAsync(ctx, s, s.key("nothing/"), index, time.Minute)
	if err := s.op.Put(ctx, s.key("elsewhere"), nil, 0); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, answer); got.err != nil || len(got.entries) != 0 || got.index <= index {
		t.Fatalf("an empty prefix answers at the KV store's index: %+v (was at %d)", got, index)
	}
}

func sessionExpiresAtTwiceTTL(t *testing.T, s *service) {
	const ttl = time.Second
	id := session(t, s, consul.SessionSpec{TTL: ttl})
	created := time.Now()
	k := s.key("k")
	lock(t, s, k, id, "")
	time.Sleep(ttl + ttl/2)
	if !alive(t, s, id) {
		t.Fatalf("expired before %s, under twice the TTL", time.Since(created))
	}
	for alive(t, s, id) {
		if time.Since(created) > 2*ttl+time.Second {
			t.Fatalf("alive after %s", time.Since(created))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if gone := time.Since(created); gone < 2*ttl-100*time.Millisecond {
		t.Fatalf("expired after %s; want about twice the %s TTL", gone, ttl)
	}
	if e := read(t, s, k); e.Session != "" {
		t.Fatalf("the expired session still holds the key: %+v", e)
	}
}

func sessionCreationRefused(t *testing.T, s *service) {
	down := "conformance-down-" + strings.ReplaceAll(s.prefix, "/", "-") + fmt.Sprint(time.Now().UnixNano())
	if err := s.op.RegisterTTLCheck(ctxFor(t), down, "", time.Hour, "critical"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.op.DeregisterCheck(context.Background(), down) })
	for name, spec := range map[string]consul.SessionSpec{
		"TTL below session_ttl_min": {TTL: 500 * time.Millisecond, Node: s.node},
		"unknown node":              {TTL: time.Minute, Node: "no-such-node"},
		"missing check":             {TTL: time.Minute, Node: s.node, NodeChecks: []string{"no-such-check"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.CreateSession(ctxFor(t), spec)
			wantKind(t, err, consul.ErrRejected)
		})
	}
	if _, err := s.CreateSession(ctxFor(t), consul.SessionSpec{TTL: time.Minute, Node: s.node, NodeChecks: []string{"serfHealth", down}}); err == nil {
		t.Fatal("created a session bound to a critical check")
	}
}

func criticalCheckRefusesSession(t *testing.T, s *service) {
	down := "conformance-down-" + strings.ReplaceAll(s.prefix, "/", "-") + fmt.Sprint(time.Now().UnixNano())
	if err := s.op.RegisterTTLCheck(ctxFor(t), down, "", time.Hour, "critical"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.op.DeregisterCheck(context.Background(), down) })
	_, err := s.CreateSession(ctxFor(t), consul.SessionSpec{TTL: time.Minute, Node: s.node, NodeChecks: []string{"serfHealth", down}})
	wantKind(t, err, consul.ErrRejected)
}

func criticalCheckInvalidates(t *testing.T, s *service) {
	check := "conformance-" + strings.ReplaceAll(s.prefix, "/", "-") + fmt.Sprint(time.Now().UnixNano())
	if err := s.op.RegisterTTLCheck(ctxFor(t), check, "", time.Hour, "passing"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.op.DeregisterCheck(context.Background(), check) })
	bound := session(t, s, consul.SessionSpec{TTL: time.Minute, LockDelay: time.Minute, NodeChecks: []string{"serfHealth", check}})
	free := session(t, s, consul.SessionSpec{TTL: time.Minute})
	lock(t, s, s.key("bound"), bound, "")
	if err := s.UpdateCheck(ctxFor(t), check, "warning", "slow"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the agent syncs a check to the catalog
	if !alive(t, s, bound) {
		t.Fatal("a warning invalidated the session; only critical does")
	}
	if err := s.UpdateCheck(ctxFor(t), check, "critical", "down"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(t, s, bound) {
		if time.Now().After(deadline) {
			t.Fatal("the session outlived its critical check")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !alive(t, s, free) {
		t.Fatal("a session not bound to the check was invalidated")
	}
	_, err := s.Acquire(ctxFor(t), s.key("bound"), free, nil)
	wantKind(t, err, consul.ErrLockDelay)
}

func nodeCheckBlocks(t *testing.T, s *service) {
	ctx := ctxFor(t)
	check := "conformance-" + strings.ReplaceAll(s.prefix, "/", "-") + fmt.Sprint(time.Now().UnixNano())
	if err := s.op.RegisterTTLCheck(ctx, check, "", time.Hour, "passing"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.op.DeregisterCheck(context.Background(), check) })
	var state consul.Check
	var index uint64
	for deadline := time.Now().Add(5 * time.Second); ; { // the agent syncs a new check to the catalog
		var err error
		if state, index, err = s.NodeCheck(ctx, s.node, check, 0, 0); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the check never showed on the node: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if state.Status != "passing" || index == 0 {
		t.Fatalf("%s: %+v at %d", check, state, index)
	}
	type read struct {
		check consul.Check
		index uint64
		err   error
	}
	answer := make(chan read, 1)
	go func() {
		c, next, err := s.NodeCheck(ctx, s.node, check, index, time.Minute)
		answer <- read{c, next, err}
	}()
	quiet(t, answer, 200*time.Millisecond, "nothing changed")
	if err := s.UpdateCheck(ctx, check, "critical", "gone"); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, answer); got.err != nil || !got.check.Critical() || got.index <= index {
		t.Fatalf("after the change: %+v", got)
	}
	_, _, err := s.NodeCheck(ctx, s.node, "no-such-check", 0, 0)
	wantKind(t, err, consul.ErrRejected)
}

func sameEntry(a, b consul.Entry) bool {
	return a.Key == b.Key && string(a.Value) == string(b.Value) && a.Flags == b.Flags && a.Session == b.Session &&
		a.LockIndex == b.LockIndex && a.ModifyIndex == b.ModifyIndex
}
