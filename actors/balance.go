package actors

import (
	"maps"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/internal/protocol"
	"go.uber.org/zap"
)

// Balance (Options.Balance): every engine counts, from the keys its watcher
// sees, how many of its resources each candidate leads, and from the
// registry how many live, healthy candidates campaign for them. With K
// resources and P candidates its fair share is ⌈K/P⌉:
//   - at its share, it is full: its locks leave a free key for
//     balanceHoldBack to a peer below its share, if there is one other than
//     the key's last holder (the fair share fills first; a candidate that
//     stops, or one whose key an operator released, is not waited for);
//   - above its share plus BalanceSlack, it hands the excess over, a few at a
//     time, to candidates below their share (a switchover each: drain, then
//     release, so terms never overlap).
//
// The slack and the hold-back are the hysteresis: leadership moves only
// when a candidate holds more than a resource above its share.
const (
	balanceEvery     = time.Second
	balanceHoldBack  = time.Second
	maxHandOversEach = 1024 // hand-overs started per balanceEvery: 8 transactions of releases
	// shareEvery: the share is worked out again this soon after a change
	// of leadership, ours or a peer's. A share a second old would have the
	// candidates at theirs leave a freed key to a peer that has since
	// reached its own, and that one leave it to them.
	shareEvery = 20 * time.Millisecond
)

// balancing says whether Balance is at work: on, with campaigns, healthy and
// not stopping.
func (r *electionRoot) balancing() bool {
	return r.eng.opts.Balance && !r.stopping && len(r.locks) > 0 && r.appHealth.Healthy
}

// shareSoon has the share worked out again within shareEvery.
func (r *electionRoot) shareSoon() {
	if r.balancing() && !r.shareDue {
		r.shareDue = true
		r.calls.after(shareEvery, &shareTick{})
	}
}

// publishShare works out this candidate's fair share of its resources,
// ⌈K/P⌉, and how far below it each peer is, and publishes for the locks
// whether this candidate is full and which peers are below.
func (r *electionRoot) publishShare() (share int, deficit map[string]int) {
	share = (len(r.locks) + len(r.peers)) / (len(r.peers) + 1)
	deficit = map[string]int{}
	for id := range r.peers {
		deficit[id] = share
	}
	mine := 0
	for resource := range r.locks {
		switch e := r.entries[resource]; {
		case e.Session == "":
		case e.Session == r.current.ID:
			mine++
		default:
			deficit[e.HolderID]--
		}
	}
	var below []string
	for id := range r.peers {
		if deficit[id] > 0 {
			below = append(below, id)
		}
	}
	slices.Sort(below)
	// Our own leaderships are counted as the peers count them, from the
	// keys: a leader that has not yet heard that its key was released
	// counts it no more than they do.
	now := &protocol.Share{Full: mine >= share, Below: below}
	if last := r.eng.share.Load(); now.Full != last.Full || !slices.Equal(now.Below, last.Below) {
		r.eng.share.Store(now)
	}
	return share, deficit
}

// balance takes one step towards fair shares.
func (r *electionRoot) balance(c actor.Context) {
	if !r.balancing() {
		return
	}
	r.peers = map[string]map[string]bool{}
	for resource := range r.locks {
		for _, cand := range r.candidatesOf[resource] {
			if cand.ID != r.eng.opts.CandidateID && cand.Healthy {
				if r.peers[cand.ID] == nil {
					r.peers[cand.ID] = map[string]bool{}
				}
				r.peers[cand.ID][resource] = true
			}
		}
	}
	share, deficit := r.publishShare()
	excess := len(r.leading) - share - BalanceSlack
	if excess <= 0 {
		return
	}
	handed := 0
	for _, resource := range slices.Sorted(maps.Keys(r.leading)) {
		if handed == min(excess, maxHandOversEach) {
			break
		}
		to := ""
		for id, short := range deficit {
			if short > 0 && r.peers[id][resource] && (to == "" || short > deficit[to] || short == deficit[to] && id < to) {
				to = id
			}
		}
		if to == "" {
			continue
		}
		deficit[to]--
		handed++
		c.Send(r.locks[resource], &protocol.HandOver{To: to})
	}
	if handed > 0 {
		r.eng.logger.Info("handing leaderships over for fair shares", zap.Int("leading", len(r.leading)),
			zap.Int("share", share), zap.Int("handing_over", handed))
	}
}
