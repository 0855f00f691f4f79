package actors

import (
	"slices"
	"sync/atomic"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/internal/protocol"
)

// TestShareCountsOurLeadershipsAsThePeersDo: a candidate counts its own
// leaderships from the keys, as its peers count them. When an operator
// releases one of its keys, it is below its share as soon as its watcher
// shows the key free, even while its lock has not yet stepped down. Counted
// by the locks that lead, it would think itself full and leave the next freed
// key to a peer below its share, while the peers left it to this candidate:
// the key would stay free for balanceHoldBack.
func TestShareCountsOurLeadershipsAsThePeersDo(t *testing.T) {
	r := &electionRoot{eng: &engine{opts: Options{CandidateID: "a", Balance: true}, share: new(atomic.Pointer[protocol.Share])}}
	r.eng.share.Store(&protocol.Share{})
	r.current.ID = "session-a"
	held := func(id string) protocol.KeyEntry {
		return protocol.KeyEntry{Exists: true, Session: "session-" + id, HolderID: id}
	}
	released := protocol.KeyEntry{Exists: true, HolderID: "a"} // value and flags kept
	r.locks = map[string]*actor.PID{"r1": nil, "r2": nil, "r3": nil, "r4": nil}
	r.peers = map[string]map[string]bool{"b": {"r1": true, "r2": true, "r3": true, "r4": true}}
	r.leading = map[string]bool{"r1": true, "r2": true}

	for _, step := range []struct {
		name    string
		entries map[string]protocol.KeyEntry
		want    protocol.Share
	}{
		{"a and b lead two each", map[string]protocol.KeyEntry{"r1": held("a"), "r2": held("a"), "r3": held("b"), "r4": held("b")},
			protocol.Share{Full: true}},
		{"r2 released, a's lock not told yet", map[string]protocol.KeyEntry{"r1": held("a"), "r2": released, "r3": held("b"), "r4": held("b")},
			protocol.Share{Full: false}},
		{"b took r2", map[string]protocol.KeyEntry{"r1": held("a"), "r2": held("b"), "r3": held("b"), "r4": held("b")},
			protocol.Share{Full: false}},
		{"r3 and r4 released", map[string]protocol.KeyEntry{"r1": held("a"), "r2": held("a"), "r3": {Exists: true, HolderID: "b"}},
			protocol.Share{Full: true, Below: []string{"b"}}},
	} {
		r.entries = step.entries
		share, _ := r.publishShare()
		got := r.eng.share.Load()
		if share != 2 || got.Full != step.want.Full || !slices.Equal(got.Below, step.want.Below) {
			t.Errorf("%s: share %d, %+v; want 2, %+v", step.name, share, *got, step.want)
		}
	}
}
