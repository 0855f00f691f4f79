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
)

// balance takes one step towards fair shares.
func (r *electionRoot) balance(c actor.Context) {
	if r.stopping || len(r.locks) == 0 || !r.appHealth.Healthy {
		return
	}
	// peers are the live, healthy candidates campaigning for some of our
	// resources, with the set of those they campaign for.
	peers := map[string]map[string]bool{}
	for resource := range r.locks {
		for _, cand := range r.candidatesOf[resource] {
			if cand.ID != r.eng.opts.CandidateID && cand.Healthy {
				if peers[cand.ID] == nil {
					peers[cand.ID] = map[string]bool{}
				}
				peers[cand.ID][resource] = true
			}
		}
	}
	share := (len(r.locks) + len(peers)) / (len(peers) + 1) // ⌈K/P⌉
	// How far below its share each peer is, counted over our resources.
	deficit := map[string]int{}
	for id := range peers {
		deficit[id] = share
	}
	for resource := range r.locks {
		if holder := r.entries[resource].HolderID; r.entries[resource].Session != "" {
			deficit[holder]--
		}
	}
	var below []string
	for id := range peers {
		if deficit[id] > 0 {
			below = append(below, id)
		}
	}
	slices.Sort(below)
	if now := (protocol.Share{Full: len(r.leading) >= share, Below: below}); now.Full != r.share.Full || !slices.Equal(now.Below, r.share.Below) {
		r.share = &now
		for _, pid := range r.locks {
			c.Send(pid, r.share)
		}
	}
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
			if short > 0 && peers[id][resource] && (to == "" || short > deficit[to] || short == deficit[to] && id < to) {
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
