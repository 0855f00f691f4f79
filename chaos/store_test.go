//go:build unix

package chaos

import (
	"sync"
	"testing"
)

func TestStoreRejectsTokensLowerThanTheHighestAccepted(t *testing.T) {
	dir := t.TempDir()
	// Separate handles lock separately, as separate processes do.
	old, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	current, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer current.Close()

	for _, step := range []struct {
		store *Store
		id    string
		token uint64
		want  bool
	}{
		{old, "c1", 10, true},
		{old, "c1", 10, true}, // the same leader writes again
		{current, "c2", 20, true},
		{old, "c1", 10, false}, // fenced
		{current, "c2", 20, true},
	} {
		got, err := step.store.Write(step.id, step.token)
		if err != nil || got != step.want {
			t.Fatalf("Write(%s, %d) = %v, %v; want %v", step.id, step.token, got, err, step.want)
		}
	}
	writes, err := ReadWrites(dir)
	if err != nil || len(writes) != 5 || writes[3].Accepted || writes[3].Highest != 20 {
		t.Fatalf("record %v, %v; want 5 writes, the fourth refused with highest 20", writes, err)
	}
}

func TestStoreOrdersConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	// Each writer raises its token as it goes, as leaders do over terms, so
	// that writers that fall behind are refused however the scheduler runs
	// them: only a perfect round robin would refuse none.
	var wg sync.WaitGroup
	for writer := uint64(1); writer <= 4; writer++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := OpenStore(dir)
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close()
			for i := range uint64(200) {
				if _, err := s.Write("c", 4*i+writer); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	writes, err := ReadWrites(dir)
	if err != nil || len(writes) != 800 {
		t.Fatalf("%d writes, %v; want 800", len(writes), err)
	}
	r := Check(nil, writes, nil, Bounds{})
	if len(r.StaleAccepts) != 0 || len(r.WrongRejects) != 0 || r.Rejected == 0 {
		t.Fatalf("stale accepts %v, wrong rejects %v, %d rejected: the record is not the store's order", r.StaleAccepts, r.WrongRejects, r.Rejected)
	}
}
