package actors

import (
	"fmt"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/protocol"
)

// TestAWatcherInABurstPausesLessWhileKeysAreFreedOrHandedOver: a watcher of
// 11 shards of 1,000 keys, whose listing took 60 ms in a burst, reads again
// after 11 × 60 ms when the burst only acquires keys, and after at most
// settleFreed when it frees keys or hands them over, to us or to another
// candidate: those are a candidate stopping, whose keys the others wait for.
func TestAWatcherInABurstPausesLessWhileKeysAreFreedOrHandedOver(t *testing.T) {
	entries := make([]consul.Entry, 1000)
	for i := range entries {
		entries[i] = consul.Entry{Key: fmt.Sprintf("p/r%04d", i)}
	}
	burst := func(e protocol.KeyEntry) []protocol.KeyEntry {
		changed := make([]protocol.KeyEntry, settleBurst+1)
		for i := range changed {
			changed[i] = e
		}
		return changed
	}
	for _, tc := range []struct {
		name    string
		changed []protocol.KeyEntry
		want    time.Duration
	}{
		{"acquired by others", burst(protocol.KeyEntry{Exists: true, Session: "other"}), 660 * time.Millisecond},
		{"freed", burst(protocol.KeyEntry{Exists: true}), settleFreed},
		{"handed to us", burst(protocol.KeyEntry{Exists: true, Session: "ours", From: "leaving"}), settleFreed},
		{"handed to another", burst(protocol.KeyEntry{Exists: true, Session: "other", From: "leaving"}), settleFreed},
		{"one change", []protocol.KeyEntry{{Exists: true, Session: "other"}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &keyWatcher{shards: 11, session: "ours"}
			if got := w.settle(&listed{entries: entries, took: 60 * time.Millisecond}, tc.changed); got != tc.want {
				t.Errorf("pause %v; want %v", got, tc.want)
			}
		})
	}
}
