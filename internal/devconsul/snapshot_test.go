package devconsul

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestRestoreTakesIndexesBackButNotNewWrites pins down what the engine's key
// watcher relies on after a snapshot restore (Consul 1.14.11): the restored
// state is the snapshot's, and so is the index a listing reports (lower than
// before); a blocking query in flight answers at once, early, with the
// index it waited at; a blocking query at that index then waits its whole
// wait; and the next write gets an index above every earlier one.
func TestRestoreTakesIndexesBackButNotNewWrites(t *testing.T) {
	t.Parallel()
	a := ForTest(t, Config{})
	op, ctx := a.Operator(), t.Context()
	// list reads the prefix p/ (blocking at index, if not 0) and returns the
	// index Consul answered with.
	list := func(index uint64, wait time.Duration) uint64 {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("%s/v1/kv/p/?recurse&index=%d&wait=%s", a.URL(), index, wait))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		got, err := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
		if err != nil {
			t.Fatalf("X-Consul-Index: %v", err)
		}
		return got
	}
	if err := op.Put(ctx, "p/kept", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	atSnapshot := list(0, 0)
	snapshot, err := a.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := op.Put(ctx, "p/kept", []byte(strconv.Itoa(i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := op.Put(ctx, "p/gone", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	before := list(0, 0)

	inFlight := make(chan time.Duration, 1)
	var answered uint64
	go func() {
		start := time.Now()
		answered = list(before, 30*time.Second)
		inFlight <- time.Since(start)
	}()
	time.Sleep(300 * time.Millisecond) // the query is waiting
	if err := a.Restore(ctx, snapshot); err != nil {
		t.Fatal(err)
	}
	if took := <-inFlight; took > 10*time.Second || answered != before {
		t.Errorf("the blocking query in flight answered after %s with index %d; want an early answer with the index it waited at, %d", took, answered, before)
	}
	if got := list(0, 0); got != atSnapshot {
		t.Errorf("after the restore the listing's index is %d; want the snapshot's, %d (it was %d)", got, atSnapshot, before)
	}
	if _, ok, err := op.Get(ctx, "p/gone"); err != nil || ok {
		t.Errorf("a key written after the snapshot: ok %v, %v; want it gone", ok, err)
	}
	start := time.Now()
	if got := list(before, 2*time.Second); got != atSnapshot || time.Since(start) < 2*time.Second {
		t.Errorf("a blocking query at the old index answered after %s with index %d; want the whole wait, then %d", time.Since(start), got, atSnapshot)
	}
	if err := op.Put(ctx, "p/kept", []byte("new"), 0); err != nil {
		t.Fatal(err)
	}
	if e, _, err := op.Get(ctx, "p/kept"); err != nil || e.ModifyIndex <= before {
		t.Errorf("a write after the restore has index %d, %v; want one above every earlier write (%d)", e.ModifyIndex, err, before)
	}
}

// TestRestoreIntoANewDatacenterTakesWriteIndexesBack: a snapshot restored
// into another datacenter (one rebuilt after losing every server) continues
// from the snapshot's index, so writes after the restore can get indexes
// lower than writes the old datacenter made after the snapshot. Fencing
// tokens, which are these indexes, then go back; see docs/reliability.md.
func TestRestoreIntoANewDatacenterTakesWriteIndexesBack(t *testing.T) {
	t.Parallel()
	old, ctx := ForTest(t, Config{}), t.Context()
	if err := old.Operator().Put(ctx, "p/k", []byte("at the snapshot"), 0); err != nil {
		t.Fatal(err)
	}
	snapshot, err := old.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := old.Operator().Put(ctx, "p/k", []byte(strconv.Itoa(i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	last, _, err := old.Operator().Get(ctx, "p/k")
	if err != nil {
		t.Fatal(err)
	}
	rebuilt := ForTest(t, Config{})
	if err := rebuilt.Restore(ctx, snapshot); err != nil {
		t.Fatal(err)
	}
	if err := rebuilt.Operator().Put(ctx, "p/k", []byte("after the restore"), 0); err != nil {
		t.Fatal(err)
	}
	next, _, err := rebuilt.Operator().Get(ctx, "p/k")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("last write before the loss: index %d; first write after the restore into a new datacenter: index %d", last.ModifyIndex, next.ModifyIndex)
	if next.ModifyIndex >= last.ModifyIndex {
		t.Errorf("the first write after the restore has index %d, not below the old datacenter's last (%d)", next.ModifyIndex, last.ModifyIndex)
	}
}
