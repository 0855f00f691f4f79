package inmem_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/inmem"
	"github.com/excalibur/consul-elect/internal/devconsul"
)

// The engine's Backend, implemented here (a test, so that package inmem does
// not depend on the engine).
var _ actors.Backend = (*inmem.Store)(nil)

// agent is the dev agent the conformance table runs its Consul rows on.
var agent *devconsul.Agent

func TestMain(m *testing.M) { devconsul.Main(m, &agent) }

// newStore returns a store that accepts short TTLs, closed after the test.
func newStore(t *testing.T, opts ...inmem.Option) *inmem.Store {
	t.Helper()
	s := inmem.New(append([]inmem.Option{inmem.WithMinSessionTTL(100 * time.Millisecond)}, opts...)...)
	t.Cleanup(s.Close)
	return s
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newSession(t *testing.T, s *inmem.Store, spec consul.SessionSpec) string {
	t.Helper()
	id, err := s.CreateSession(ctxFor(t), spec)
	if err != nil {
		t.Fatalf("CreateSession(%+v): %v", spec, err)
	}
	return id
}

func acquire(t *testing.T, s *inmem.Store, key, session, value string) consul.Entry {
	t.Helper()
	e, err := s.Acquire(ctxFor(t), key, session, []byte(value))
	if err != nil {
		t.Fatalf("Acquire(%s, %s): %v", key, session, err)
	}
	return e
}

// wantKind fails unless err is a *consul.Error of kind (nil: unclassified).
func wantKind(t *testing.T, err, kind error) {
	t.Helper()
	var cerr *consul.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("error %v (%T); want a *consul.Error of kind %v", err, err, kind)
	}
	if cerr.Kind != kind {
		t.Fatalf("error %v has kind %v; want %v", err, cerr.Kind, kind)
	}
}

func get(t *testing.T, s *inmem.Store, key string) (consul.Entry, bool) {
	t.Helper()
	e, ok, err := s.Get(ctxFor(t), key)
	if err != nil {
		t.Fatal(err)
	}
	return e, ok
}

func sessionExists(t *testing.T, s *inmem.Store, id string) bool {
	t.Helper()
	_, err := s.SessionInfo(ctxFor(t), id)
	if err != nil && !errors.Is(err, consul.ErrSessionGone) {
		t.Fatal(err)
	}
	return err == nil
}

func TestAcquireLocksTheKeyAndReturnsTheAcquiringWrite(t *testing.T) {
	s := newStore(t)
	id := newSession(t, s, consul.SessionSpec{TTL: time.Minute})
	got := acquire(t, s, "locks/a", id, "v1")
	if got.Session != id || got.Flags != consul.KeyFlags || string(got.Value) != "v1" || got.LockIndex != 1 || got.ModifyIndex == 0 {
		t.Fatalf("acquired entry %+v", got)
	}
	if stored, _ := get(t, s, "locks/a"); stored.ModifyIndex != got.ModifyIndex || stored.Session != id {
		t.Fatalf("stored %+v; Acquire answered %+v", stored, got)
	}

	// Re-locking our own key: a new write if the value changed (ModifyIndex
	// moves, LockIndex does not); no write at all if nothing changed.
	again := acquire(t, s, "locks/a", id, "v2")
	if again.ModifyIndex <= got.ModifyIndex || again.LockIndex != 1 {
		t.Fatalf("re-lock with a new value: %+v after %+v", again, got)
	}
	same := acquire(t, s, "locks/a", id, "v2")
	if same.ModifyIndex != again.ModifyIndex {
		t.Fatalf("re-lock changing nothing moved ModifyIndex %d → %d; Consul skips such a write", again.ModifyIndex, same.ModifyIndex)
	}
}

func TestAcquireIsRefusedLikeConsul(t *testing.T) {
	s := newStore(t)
	holder := newSession(t, s, consul.SessionSpec{TTL: time.Minute})
	other := newSession(t, s, consul.SessionSpec{TTL: time.Minute})
	acquire(t, s, "k", holder, "")

	_, err := s.Acquire(ctxFor(t), "k", other, nil)
	wantKind(t, err, consul.ErrLockHeld)
	if !consul.Retryable(err) {
		t.Fatal("a held lock must be retryable, as consul.Client's is")
	}
	_, err = s.Acquire(ctxFor(t), "free", "5a3c1e42-0000-4000-8000-000000000000", nil)
	wantKind(t, err, consul.ErrSessionGone)
	_, err = s.Acquire(ctxFor(t), "big", holder, make([]byte, 512*1024+1))
	wantKind(t, err, consul.ErrRejected)
}

func TestReleaseFreesTheKeyWithoutLockDelay(t *testing.T) {
	s := newStore(t)
	first := newSession(t, s, consul.SessionSpec{TTL: time.Minute, LockDelay: time.Minute})
	second := newSession(t, s, consul.SessionSpec{TTL: time.Minute})
	held := acquire(t, s, "k", first, "mine")

	if err := s.Release(ctxFor(t), "k", second, []byte("not mine")); err != nil {
		t.Fatalf("releasing a key held by another session: %v; want nil", err)
	}
	if e, _ := get(t, s, "k"); e.Session != first || e.ModifyIndex != held.ModifyIndex {
		t.Fatalf("a release by another session changed the key: %+v", e)
	}
	if err := s.Release(ctxFor(t), "k", first, []byte("last leader")); err != nil {
		t.Fatal(err)
	}
	e, _ := get(t, s, "k")
	if e.Session != "" || e.LockIndex != 1 || string(e.Value) != "last leader" || e.ModifyIndex <= held.ModifyIndex {
		t.Fatalf("after release: %+v", e)
	}
	if got := acquire(t, s, "k", second, ""); got.LockIndex != 2 {
		t.Fatalf("LockIndex %d after the second acquisition; want 2", got.LockIndex)
	}
	if err := s.Release(ctxFor(t), "missing", first, nil); err != nil {
		t.Fatalf("releasing a missing key: %v; want nil", err)
	}
}

func TestInvalidationStartsTheLockDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	invalidations := map[string]func(t *testing.T, s *inmem.Store, session string){
		"destroyed": func(t *testing.T, s *inmem.Store, session string) {
			if err := s.DestroySession(ctxFor(t), session); err != nil {
				t.Fatal(err)
			}
		},
		"check critical": func(t *testing.T, s *inmem.Store, _ string) {
			if err := s.UpdateCheck(ctxFor(t), inmem.SerfHealth, inmem.StatusCritical, "node failed"); err != nil {
				t.Fatal(err)
			}
		},
		"expired": func(t *testing.T, s *inmem.Store, session string) {
			for sessionExists(t, s, session) {
				time.Sleep(10 * time.Millisecond)
			}
		},
	}
	for name, invalidate := range invalidations {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			old := newSession(t, s, consul.SessionSpec{TTL: 150 * time.Millisecond, LockDelay: delay})
			acquire(t, s, "k", old, "v")
			invalidated := time.Now()
			invalidate(t, s, old)
			if e, _ := get(t, s, "k"); e.Session != "" || string(e.Value) != "v" {
				t.Fatalf("after invalidation the key is %+v; want released with its value", e)
			}
			if sessionExists(t, s, old) {
				t.Fatal("the session still exists")
			}
			if err := s.UpdateCheck(ctxFor(t), inmem.SerfHealth, inmem.StatusPassing, ""); err != nil {
				t.Fatal(err)
			}
			next := newSession(t, s, consul.SessionSpec{TTL: time.Minute})
			// Lock-delay is checked before the session and survives a delete.
			_, err := s.Acquire(ctxFor(t), "k", "no-such-session", nil)
			wantKind(t, err, consul.ErrLockDelay)
			if err := s.Delete(ctxFor(t), "k"); err != nil {
				t.Fatal(err)
			}
			for {
				_, err := s.Acquire(ctxFor(t), "k", next, nil)
				if err == nil {
					break
				}
				wantKind(t, err, consul.ErrLockDelay)
				time.Sleep(5 * time.Millisecond)
			}
			if waited := time.Since(invalidated); waited < delay {
				t.Fatalf("locked %s after the invalidation, inside the %s lock-delay", waited, delay)
			}
		})
	}
}

func TestZeroLockDelayMeansNone(t *testing.T) {
	s := newStore(t)
	old := newSession(t, s, consul.SessionSpec{TTL: time.Minute})
	next := newSession(t, s, consul.SessionSpec{TTL: time.Minute})
	acquire(t, s, "k", old, "")
	if err := s.DestroySession(ctxFor(t), old); err != nil {
		t.Fatal(err)
	}
	acquire(t, s, "k", next, "")
}

func TestDeletedKeyRestartsLockIndexButNotModifyIndex(t *testing.T) {
	s := newStore(t)
	id := newSession(t, s, consul.SessionSpec{TTL: time.Minute})
	first := acquire(t, s, "k", id, "")
	if err := s.Delete(ctxFor(t), "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok := get(t, s, "k"); ok {
		t.Fatal("the key exists after Delete")
	}
	again := acquire(t, s, "k", id, "")
	if again.LockIndex != 1 || again.ModifyIndex <= first.ModifyIndex {
		t.Fatalf("after delete: %+v; want LockIndex 1 and ModifyIndex above %d", again, first.ModifyIndex)
	}
}

func TestOneIndexForEveryWrite(t *testing.T) {
	s := newStore(t)
	a := newSession(t, s, consul.SessionSpec{TTL: time.Minute})
	var last uint64
	step := func(what string, index uint64) {
		t.Helper()
		if index <= last {
			t.Fatalf("%s: index %d, not above the previous write's %d", what, index, last)
		}
		last = index
	}
	step("acquire x", acquire(t, s, "x", a, "").ModifyIndex)
	if err := s.Put(ctxFor(t), "y", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	y, _ := get(t, s, "y")
	step("put y", y.ModifyIndex)
	newSession(t, s, consul.SessionSpec{TTL: time.Minute}) // a write too
	step("acquire z", acquire(t, s, "z", a, "").ModifyIndex)
	if err := s.DestroySession(ctxFor(t), a); err != nil {
		t.Fatal(err)
	}
	x, _ := get(t, s, "x")
	z, _ := get(t, s, "z")
	step("release of x by the destroy", x.ModifyIndex)
	if z.ModifyIndex != x.ModifyIndex {
		t.Fatalf("keys released by one invalidation have indexes %d and %d; want one write", x.ModifyIndex, z.ModifyIndex)
	}
}

func TestPlainPutKeepsTheSessionAndResetsLockIndex(t *testing.T) {
	s := newStore(t)
	id := newSession(t, s, consul.SessionSpec{TTL: time.Minute})
	acquire(t, s, "k", id, "")
	acquire(t, s, "k", id, "") // LockIndex 1
	if err := s.Put(ctxFor(t), "k", []byte("foreign"), 7); err != nil {
		t.Fatal(err)
	}
	e, _ := get(t, s, "k")
	if e.Session != id || e.Flags != 7 || e.LockIndex != 0 || string(e.Value) != "foreign" {
		t.Fatalf("after a plain put: %+v; Consul keeps the session and resets LockIndex", e)
	}
	wantKind(t, s.Put(ctxFor(t), "big", make([]byte, 512*1024+1), 0), consul.ErrRejected)
}

func TestReleaseAnyFreesTheKeyForAnOperator(t *testing.T) {
	s := newStore(t)
	id := newSession(t, s, consul.SessionSpec{TTL: time.Minute, LockDelay: time.Minute})
	held := acquire(t, s, "k", id, "doc")
	if was, err := s.ReleaseAny(ctxFor(t), "k"); err != nil || was != id {
		t.Fatalf("ReleaseAny: %q, %v; want %q", was, err, id)
	}
	e, _ := get(t, s, "k")
	if e.Session != "" || string(e.Value) != "doc" || e.Flags != consul.KeyFlags || e.ModifyIndex <= held.ModifyIndex {
		t.Fatalf("after ReleaseAny: %+v", e)
	}
	acquire(t, s, "k", newSession(t, s, consul.SessionSpec{TTL: time.Minute}), "") // no lock-delay
	if was, err := s.ReleaseAny(ctxFor(t), "missing"); err != nil || was != "" {
		t.Fatalf("ReleaseAny of a missing key: %q, %v", was, err)
	}
}

func TestGuardedPutWritesOnlyForTheLeadershipOfTheFence(t *testing.T) {
	s := newStore(t)
	holder := newSession(t, s, consul.SessionSpec{TTL: time.Minute})
	other := newSession(t, s, consul.SessionSpec{TTL: time.Minute})
	term := acquire(t, s, "lock", holder, "first term")
	fence := consul.Fence{Key: "lock", Session: holder, Token: term.ModifyIndex}
	if err := s.GuardedPut(ctxFor(t), fence, "data", []byte("1")); err != nil {
		t.Fatal(err)
	}
	for name, stale := range map[string]consul.Fence{
		"another session":       {Key: "lock", Session: other},
		"another term":          {Key: "lock", Session: holder, Token: term.ModifyIndex - 1},
		"a lock that is absent": {Key: "nothing", Session: holder},
	} {
		wantKind(t, s.GuardedPut(ctxFor(t), stale, "data", []byte(name)), consul.ErrLockLost)
	}
	// A later term on the same session has a new token: the old fence fails.
	acquire(t, s, "lock", holder, "second term")
	wantKind(t, s.GuardedPut(ctxFor(t), fence, "data", []byte("2")), consul.ErrLockLost)
	if err := s.GuardedPut(ctxFor(t), consul.Fence{Key: "lock", Session: holder}, "data", []byte("3")); err != nil {
		t.Fatalf("a fence without token checks the session only: %v", err)
	}
	if e, _ := get(t, s, "data"); string(e.Value) != "3" {
		t.Fatalf("data is %q; want 3", e.Value)
	}
}

func TestSessionExpiresAfterMultiplierTimesTTL(t *testing.T) {
	const ttl = 400 * time.Millisecond
	for _, multiplier := range []float64{2, 1} {
		t.Run(time.Duration(multiplier*float64(ttl)).String(), func(t *testing.T) {
			opts := []inmem.Option{}
			if multiplier != inmem.DefaultTTLMultiplier {
				opts = append(opts, inmem.WithTTLMultiplier(multiplier))
			}
			s := newStore(t, opts...)
			created := time.Now()
			id := newSession(t, s, consul.SessionSpec{TTL: ttl})
			acquire(t, s, "k", id, "")
			expiry := time.Duration(multiplier * float64(ttl))
			time.Sleep(expiry - 100*time.Millisecond)
			if !sessionExists(t, s, id) {
				t.Fatalf("the session expired before %s", time.Since(created))
			}
			for sessionExists(t, s, id) {
				time.Sleep(5 * time.Millisecond)
			}
			if gone := time.Since(created); gone < expiry || gone > expiry+300*time.Millisecond {
				t.Fatalf("the session expired after %s; want %s", gone, expiry)
			}
			if e, _ := get(t, s, "k"); e.Session != "" {
				t.Fatalf("the expired session still holds the key: %+v", e)
			}
		})
	}
}

func TestRenewKeepsTheSessionAlive(t *testing.T) {
	s := newStore(t, inmem.WithTTLMultiplier(1))
	id := newSession(t, s, consul.SessionSpec{TTL: 200 * time.Millisecond})
	for range 8 {
		time.Sleep(100 * time.Millisecond)
		if err := s.RenewSession(ctxFor(t), id); err != nil {
			t.Fatalf("renewing a live session: %v", err)
		}
	}
	if err := s.DestroySession(ctxFor(t), id); err != nil {
		t.Fatal(err)
	}
	wantKind(t, s.RenewSession(ctxFor(t), id), consul.ErrSessionGone)
	if err := s.DestroySession(ctxFor(t), id); err != nil {
		t.Fatalf("destroying a destroyed session: %v; want nil", err)
	}
	_, err := s.SessionInfo(ctxFor(t), id)
	wantKind(t, err, consul.ErrSessionGone)
}

func TestSessionWithoutTTLNeverExpires(t *testing.T) {
	s := newStore(t, inmem.WithTTLMultiplier(1))
	id := newSession(t, s, consul.SessionSpec{})
	time.Sleep(200 * time.Millisecond)
	if !sessionExists(t, s, id) {
		t.Fatal("a session without TTL expired")
	}
}

func TestCreateSessionIsRefusedLikeConsul(t *testing.T) {
	s := newStore(t, inmem.WithMinSessionTTL(time.Second))
	if err := s.RegisterTTLCheck(ctxFor(t), "down", "", 0, inmem.StatusCritical); err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string]consul.SessionSpec{
		"TTL below session_ttl_min": {TTL: 999 * time.Millisecond},
		"TTL above 24h":             {TTL: 25 * time.Hour},
		"unknown node":              {TTL: time.Minute, Node: "elsewhere"},
		"missing check":             {TTL: time.Minute, NodeChecks: []string{"nope"}},
		"critical check":            {TTL: time.Minute, NodeChecks: []string{inmem.SerfHealth, "down"}},
		"critical service check":    {TTL: time.Minute, ServiceChecks: []string{"down"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.CreateSession(ctxFor(t), spec)
			wantKind(t, err, consul.ErrRejected)
		})
	}
	// NoChecks binds nothing, so a failed node does not matter.
	if err := s.UpdateCheck(ctxFor(t), inmem.SerfHealth, inmem.StatusCritical, ""); err != nil {
		t.Fatal(err)
	}
	_, err := s.CreateSession(ctxFor(t), consul.SessionSpec{TTL: time.Minute})
	wantKind(t, err, consul.ErrRejected) // bound to serfHealth by default
	newSession(t, s, consul.SessionSpec{TTL: time.Minute, NoChecks: true})
}

func TestSessionInfoDescribesTheSession(t *testing.T) {
	s := newStore(t, inmem.WithNode("node-1"))
	id := newSession(t, s, consul.SessionSpec{Name: "n", TTL: 2 * time.Second, LockDelay: 3 * time.Second})
	info, err := s.SessionInfo(ctxFor(t), id)
	want := consul.SessionInfo{ID: id, Node: "node-1", Name: "n", LockDelay: 3 * time.Second, TTL: 2 * time.Second}
	if err != nil || info != want {
		t.Fatalf("SessionInfo: %+v, %v; want %+v", info, err, want)
	}
}

func TestCriticalCheckInvalidatesOnlyTheSessionsBoundToIt(t *testing.T) {
	s := newStore(t)
	if err := s.RegisterTTLCheck(ctxFor(t), "app", "", 0, inmem.StatusPassing); err != nil {
		t.Fatal(err)
	}
	bound := newSession(t, s, consul.SessionSpec{TTL: time.Minute, NodeChecks: []string{inmem.SerfHealth, "app"}, LockDelay: time.Minute})
	free := newSession(t, s, consul.SessionSpec{TTL: time.Minute})
	acquire(t, s, "bound", bound, "")
	acquire(t, s, "free", free, "")

	if err := s.UpdateCheck(ctxFor(t), "app", inmem.StatusWarning, "slow"); err != nil {
		t.Fatal(err)
	}
	if !sessionExists(t, s, bound) {
		t.Fatal("a warning invalidated the session; only critical does")
	}
	if err := s.UpdateCheck(ctxFor(t), "app", inmem.StatusCritical, "down"); err != nil {
		t.Fatal(err)
	}
	if sessionExists(t, s, bound) || !sessionExists(t, s, free) {
		t.Fatal("want the bound session invalidated and the other alive")
	}
	_, err := s.Acquire(ctxFor(t), "bound", free, nil)
	wantKind(t, err, consul.ErrLockDelay)
	check, _, err := s.NodeCheck(ctxFor(t), inmem.DefaultNode, "app", 0, 0)
	if err != nil || !check.Critical() || check.Output != "down" {
		t.Fatalf("NodeCheck: %+v, %v", check, err)
	}
}

func TestDeregisteringACheckInvalidatesTheSessionsBoundToIt(t *testing.T) {
	s := newStore(t)
	if err := s.RegisterTTLCheck(ctxFor(t), "svc", "web", 0, inmem.StatusPassing); err != nil {
		t.Fatal(err)
	}
	check, _, err := s.NodeCheck(ctxFor(t), inmem.DefaultNode, "svc", 0, 0)
	if err != nil || check.ServiceID != "web" {
		t.Fatalf("NodeCheck: %+v, %v", check, err)
	}
	id := newSession(t, s, consul.SessionSpec{TTL: time.Minute, ServiceChecks: []string{"svc"}})
	if err := s.DeregisterCheck(ctxFor(t), "svc"); err != nil {
		t.Fatal(err)
	}
	if sessionExists(t, s, id) {
		t.Fatal("the session outlived its check")
	}
	_, _, err = s.NodeCheck(ctxFor(t), inmem.DefaultNode, "svc", 0, 0)
	wantKind(t, err, consul.ErrRejected)
}

func TestTTLCheckLapsesToCritical(t *testing.T) {
	s := newStore(t)
	if err := s.RegisterTTLCheck(ctxFor(t), "beat", "", 300*time.Millisecond, inmem.StatusPassing); err != nil {
		t.Fatal(err)
	}
	id := newSession(t, s, consul.SessionSpec{TTL: time.Minute, NodeChecks: []string{"beat"}})
	for range 4 { // updated in time: stays passing
		time.Sleep(150 * time.Millisecond)
		if err := s.UpdateCheck(ctxFor(t), "beat", inmem.StatusPassing, ""); err != nil {
			t.Fatal(err)
		}
	}
	if !sessionExists(t, s, id) {
		t.Fatal("a TTL check updated in time lapsed")
	}
	time.Sleep(450 * time.Millisecond)
	check, _, err := s.NodeCheck(ctxFor(t), inmem.DefaultNode, "beat", 0, 0)
	if err != nil || !check.Critical() || check.Output != "TTL expired" {
		t.Fatalf("after its TTL the check is %+v (%v); want critical, TTL expired", check, err)
	}
	if sessionExists(t, s, id) {
		t.Fatal("the session outlived its lapsed check")
	}
}

// listing is the answer of a blocking ListPrefix, received on a channel.
type listing struct {
	entries []consul.Entry
	index   uint64
	err     error
	at      time.Time
}

func listAsync(ctx context.Context, s actors.Backend, prefix string, index uint64, wait time.Duration) <-chan listing {
	answer := make(chan listing, 1)
	go func() {
		entries, next, err := s.ListPrefix(ctx, prefix, index, wait)
		answer <- listing{entries, next, err, time.Now()}
	}()
	return answer
}

func quiet[T any](t *testing.T, answer <-chan T, d time.Duration, why string) {
	t.Helper()
	select {
	case got := <-answer:
		t.Fatalf("answered %+v; want no answer (%s)", got, why)
	case <-time.After(d):
	}
}

func receive[T any](t *testing.T, answer <-chan T) T {
	t.Helper()
	select {
	case got := <-answer:
		return got
	case <-time.After(5 * time.Second):
		t.Fatal("no answer within 5s")
		panic("unreachable")
	}
}

func TestListPrefixBlocksUntilThePrefixChanges(t *testing.T) {
	s := newStore(t)
	ctx := ctxFor(t)
	if err := s.Put(ctx, "p/a", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	entries, index, err := s.ListPrefix(ctx, "p/", 0, 0)
	if err != nil || len(entries) != 1 || entries[0].Key != "p/a" || index != entries[0].ModifyIndex {
		t.Fatalf("ListPrefix at 0: %+v, %d, %v", entries, index, err)
	}

	answer := listAsync(ctx, s, "p/", index, time.Minute)
	if err := s.Put(ctx, "q/other", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	quiet(t, answer, 100*time.Millisecond, "a write under another prefix")
	if err := s.Put(ctx, "p/b", []byte("2"), 0); err != nil {
		t.Fatal(err)
	}
	got := receive(t, answer)
	if got.err != nil || len(got.entries) != 2 || got.entries[1].Key != "p/b" || got.index != got.entries[1].ModifyIndex {
		t.Fatalf("woken by a write under the prefix: %+v", got)
	}

	// A delete wakes it too, at the tombstone's index.
	answer = listAsync(ctx, s, "p/", got.index, time.Minute)
	if err := s.Delete(ctx, "p/b"); err != nil {
		t.Fatal(err)
	}
	deleted := receive(t, answer)
	if deleted.err != nil || len(deleted.entries) != 1 || deleted.index <= got.index {
		t.Fatalf("woken by a delete: %+v (previous index %d)", deleted, got.index)
	}
}

func TestListPrefixAnswersAfterTheWaitWithTheSameIndex(t *testing.T) {
	s := newStore(t)
	ctx := ctxFor(t)
	if err := s.Put(ctx, "p/a", nil, 0); err != nil {
		t.Fatal(err)
	}
	_, index, _ := s.ListPrefix(ctx, "p/", 0, 0)
	start := time.Now()
	got := receive(t, listAsync(ctx, s, "p/", index, 200*time.Millisecond))
	if got.err != nil || got.index != index || len(got.entries) != 1 {
		t.Fatalf("after the wait: %+v; want the same index %d", got, index)
	}
	// The wait is stretched by up to wait/16 of jitter, as in Consul.
	if waited := got.at.Sub(start); waited < 200*time.Millisecond || waited > 200*time.Millisecond*17/16+200*time.Millisecond {
		t.Fatalf("answered after %s; want 200ms (+ jitter)", waited)
	}
}

func TestListPrefixOfAnEmptyPrefixFollowsTheWholeKVStore(t *testing.T) {
	s := newStore(t)
	ctx := ctxFor(t)
	entries, index, err := s.ListPrefix(ctx, "empty/", 0, 0)
	if err != nil || len(entries) != 0 || index != 1 {
		t.Fatalf("a fresh store lists %+v at %d (%v); want nothing at index 1", entries, index, err)
	}
	answer := listAsync(ctx, s, "empty/", index, time.Minute)
	if err := s.Put(ctx, "elsewhere", nil, 0); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, answer); got.err != nil || len(got.entries) != 0 || got.index <= index {
		t.Fatalf("an empty prefix answers with the KV index, as Consul does: %+v", got)
	}
}

func TestBlockingQueriesEndWithTheirContext(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	_, index, _ := s.ListPrefix(ctx, "p/", 0, 0)
	answer := listAsync(ctx, s, "p/", index, time.Minute)
	checkAnswer := make(chan error, 1)
	go func() {
		_, next, _ := s.NodeCheck(ctx, inmem.DefaultNode, inmem.SerfHealth, 0, 0)
		_, _, err := s.NodeCheck(ctx, inmem.DefaultNode, inmem.SerfHealth, next, time.Minute)
		checkAnswer <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if got := receive(t, answer); !errors.Is(got.err, context.Canceled) {
		t.Fatalf("ListPrefix after cancel: %v; want context.Canceled", got.err)
	}
	if err := receive(t, checkAnswer); !errors.Is(err, context.Canceled) {
		t.Fatalf("NodeCheck after cancel: %v; want context.Canceled", err)
	}
}

func TestNodeCheckBlocksUntilACheckChanges(t *testing.T) {
	s := newStore(t)
	ctx := ctxFor(t)
	check, index, err := s.NodeCheck(ctx, inmem.DefaultNode, inmem.SerfHealth, 0, 0)
	if err != nil || check.Status != inmem.StatusPassing || index == 0 {
		t.Fatalf("serfHealth: %+v at %d (%v)", check, index, err)
	}
	type read struct {
		check consul.Check
		index uint64
		err   error
	}
	answer := make(chan read, 1)
	go func() {
		c, next, err := s.NodeCheck(ctx, inmem.DefaultNode, inmem.SerfHealth, index, time.Minute)
		answer <- read{c, next, err}
	}()
	quiet(t, answer, 100*time.Millisecond, "nothing changed")
	if err := s.UpdateCheck(ctx, inmem.SerfHealth, inmem.StatusCritical, "gone"); err != nil {
		t.Fatal(err)
	}
	got := receive(t, answer)
	if got.err != nil || !got.check.Critical() || got.index <= index {
		t.Fatalf("after the change: %+v", got)
	}
	_, _, err = s.NodeCheck(ctx, "another-node", inmem.SerfHealth, 0, 0)
	wantKind(t, err, consul.ErrRejected)
}

func TestFreezeHoldsEveryCallUntilUnfreeze(t *testing.T) {
	s := newStore(t)
	ctx := ctxFor(t)
	id := newSession(t, s, consul.SessionSpec{TTL: time.Minute})
	_, index, _ := s.ListPrefix(ctx, "p/", 0, 0)
	waiting := listAsync(ctx, s, "p/", index, time.Minute)

	s.Freeze()
	renewed := make(chan error, 1)
	go func() { renewed <- s.RenewSession(ctx, id) }()
	quiet(t, renewed, 200*time.Millisecond, "frozen")

	// Operators are not frozen; the blocking query is woken but cannot answer.
	if err := s.Put(ctx, "p/a", nil, 0); err != nil {
		t.Fatalf("an operator's Put while frozen: %v", err)
	}
	quiet(t, waiting, 100*time.Millisecond, "frozen")

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := s.Agent(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call with a deadline while frozen: %v; want context.DeadlineExceeded", err)
	}

	s.Unfreeze()
	if err := receive(t, renewed); err != nil {
		t.Fatalf("the renew held by the freeze: %v", err)
	}
	if got := receive(t, waiting); got.err != nil || len(got.entries) != 1 {
		t.Fatalf("the blocking query held by the freeze: %+v", got)
	}
}

func TestSessionsExpireWhileFrozen(t *testing.T) {
	s := newStore(t, inmem.WithTTLMultiplier(1))
	id := newSession(t, s, consul.SessionSpec{TTL: 200 * time.Millisecond})
	s.Freeze()
	time.Sleep(400 * time.Millisecond)
	s.Unfreeze()
	wantKind(t, s.RenewSession(ctxFor(t), id), consul.ErrSessionGone)
}

func TestCloseEndsCallsInProgressAndLaterOnes(t *testing.T) {
	s := inmem.New()
	ctx := ctxFor(t)
	_, index, _ := s.ListPrefix(ctx, "p/", 0, 0)
	waiting := listAsync(ctx, s, "p/", index, time.Minute)
	s.Freeze()
	frozen := make(chan error, 1)
	go func() { _, err := s.Agent(ctx); frozen <- err }()
	time.Sleep(50 * time.Millisecond)

	s.Close()
	if got := receive(t, waiting); !errors.Is(got.err, inmem.ErrClosed) {
		t.Fatalf("a blocking query at Close: %v; want ErrClosed", got.err)
	}
	if err := receive(t, frozen); !errors.Is(err, inmem.ErrClosed) {
		t.Fatalf("a frozen call at Close: %v; want ErrClosed", err)
	}
	_, err := s.CreateSession(ctx, consul.SessionSpec{})
	wantKind(t, err, nil)
	if !errors.Is(err, inmem.ErrClosed) || !consul.Retryable(err) {
		t.Fatalf("after Close: %v; want a retryable ErrClosed, like an unreachable agent", err)
	}
	if err := s.Put(ctx, "k", nil, 0); !errors.Is(err, inmem.ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	s.Close() // twice is harmless
}

func TestAgentAndServerNode(t *testing.T) {
	s := newStore(t, inmem.WithNode("n1"), inmem.WithDatacenter("east"))
	ctx := ctxFor(t)
	if info, err := s.Agent(ctx); err != nil || info != (consul.AgentInfo{Node: "n1", Datacenter: "east", Server: true}) {
		t.Fatalf("Agent: %+v, %v", info, err)
	}
	if node, err := s.ServerNode(ctx, "east"); err != nil || node != "n1" {
		t.Fatalf("ServerNode(east): %q, %v", node, err)
	}
	_, err := s.ServerNode(ctx, "west")
	wantKind(t, err, nil)
}

func TestNewPanicsOnInvalidOptions(t *testing.T) {
	for name, opt := range map[string]inmem.Option{
		"WithTTLMultiplier": inmem.WithTTLMultiplier(0.5),
		"WithMinSessionTTL": inmem.WithMinSessionTTL(0),
		"WithNode":          inmem.WithNode(""),
		"WithDatacenter":    inmem.WithDatacenter(""),
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if msg, _ := r.(string); !strings.Contains(msg, name) {
					t.Fatalf("panic %v; want one naming %s", r, name)
				}
			}()
			inmem.New(opt).Close()
		})
	}
}
