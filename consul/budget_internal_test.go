package consul

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func TestTxnOpsLimitFollowsTheConsulVersion(t *testing.T) {
	for v, want := range map[string]int{
		"1.14.0": 128, "1.14.11": 128, "v1.15.2": 128, "1.16.0-dev": 128, "1.21.4+ent": 128, "2.0.0": 128,
		"1.13.9": 64, "1.9.17": 64, "1.7.0": 64, "v0.9.3": 64,
		"": 64, "dev": 64, "1": 64, "1.x": 64,
	} {
		if got := txnOpsFor(v); got != want {
			t.Errorf("txnOpsFor(%q) = %d; want %d", v, got, want)
		}
	}
}

func TestRequestsAreClassifiedForTheBudget(t *testing.T) {
	for url, want := range map[string]class{
		"/v1/kv/p/?recurse=&index=42&wait=300000ms": classPoll,
		"/v1/health/node/n?index=7":                 classPoll,
		"/v1/kv/p/?recurse=":                        classRequest,
		"/v1/kv/p/?index=0":                         classRequest,
		"/v1/txn":                                   classRequest,
		"/v1/session/renew/0f3c":                    classLiveness,
		"/prefix/v1/session/renew/0f3c":             classLiveness,
		"/v1/agent/check/update/service:x":          classLiveness,
		"/v1/agent/check/pass/x":                    classLiveness,
		"/v1/session/info/0f3c":                     classRequest,
	} {
		r, err := http.NewRequest(http.MethodGet, "http://agent"+url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := classOf(r); got != want {
			t.Errorf("classOf(%s) = %d; want %d", url, got, want)
		}
	}
}

// slot starts acquiring a slot of class c and tells when it has one.
func slot(ctx context.Context, b *budget, c class) <-chan error {
	done := make(chan error, 1)
	go func() { done <- b.acquire(ctx, c) }()
	return done
}

func granted(t *testing.T, what string, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no slot after 5s", what)
	}
}

func waits(t *testing.T, what string, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s got a slot (%v); it should wait", what, err)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestBudgetKeepsSlotsFromLongPollsForWritesAndRenewals(t *testing.T) {
	ctx := t.Context()
	b := newBudget(5) // polls ≤ 3, all but liveness ≤ 4
	for range 3 {
		granted(t, "a long poll", slot(ctx, b, classPoll))
	}
	poll4 := slot(ctx, b, classPoll)
	waits(t, "a fourth long poll", poll4)
	granted(t, "a write beside three long polls", slot(ctx, b, classRequest))
	write2 := slot(ctx, b, classRequest)
	waits(t, "a second write (one slot is kept for renewals)", write2)
	granted(t, "a renewal with every other slot taken", slot(ctx, b, classLiveness))
	renew2 := slot(ctx, b, classLiveness)
	waits(t, "a renewal with all five slots taken", renew2)

	// A renewal frees its slot: the waiting renewal goes first, though the
	// write waited longer.
	b.release(classLiveness)
	granted(t, "the waiting renewal", renew2)
	waits(t, "the waiting write", write2)
	// A write ends: the waiting write takes its slot (the poll's share is
	// still full).
	b.release(classRequest)
	granted(t, "the waiting write", write2)
	waits(t, "the fourth poll", poll4)
	b.release(classPoll)
	granted(t, "the fourth poll", poll4)

	// A waiter that gives up leaves the queue, and its turn passes on.
	gone, cancel := context.WithCancel(ctx)
	abandoned := slot(gone, b, classRequest)
	next := slot(ctx, b, classRequest)
	waits(t, "a write behind a full budget", abandoned)
	cancel()
	if err := <-abandoned; err == nil {
		t.Fatal("a cancelled wait got a slot")
	}
	b.release(classRequest)
	granted(t, "the write behind the one that gave up", next)
}

func TestSmallBudgetsStillServeEveryone(t *testing.T) {
	ctx := t.Context()
	two := newBudget(2) // no reserve for renewals, but they go first
	granted(t, "a poll", slot(ctx, two, classPoll))
	waits(t, "a second poll", slot(ctx, two, classPoll))
	granted(t, "a write beside the poll", slot(ctx, two, classRequest))
	write := slot(ctx, two, classRequest)
	renew := slot(ctx, two, classLiveness)
	waits(t, "a renewal with both slots taken", renew)
	two.release(classRequest)
	granted(t, "the renewal, before the earlier write", renew)
	waits(t, "the write", write)

	one := newBudget(1)
	granted(t, "the only slot", slot(ctx, one, classRequest))
	renew = slot(ctx, one, classLiveness)
	waits(t, "a renewal", renew)
	one.release(classRequest)
	granted(t, "the renewal", renew)
}
