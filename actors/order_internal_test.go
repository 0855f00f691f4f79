package actors

import (
	"fmt"
	"slices"
	"testing"
)

func numbered(format string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf(format, i)
	}
	return names
}

// TestCampaignOrderWalksEachBlockFromAnOffsetOfItsOwn: every resource comes
// once, each block in runs of campaignRun from one offset, and two
// candidates begin at different keys in every block.
func TestCampaignOrderWalksEachBlockFromAnOffsetOfItsOwn(t *testing.T) {
	for _, n := range []int{1, 100, campaignBlock + 1, 3*campaignBlock + 100} {
		resources := numbered("r%05d", n)
		slices.Reverse(resources) // the order given does not matter
		if got := slices.Sorted(slices.Values(inCampaignOrder(resources, "a"))); !slices.Equal(got, numbered("r%05d", n)) {
			t.Fatalf("%d resources: the order has %d, not each once", n, len(got))
		}
	}
	sorted := numbered("r%05d", 3*campaignBlock)
	blocks := slices.Collect(slices.Chunk(sorted, campaignBlock))
	firsts := map[string][]string{}
	for _, id := range []string{"a", "b"} {
		order := inCampaignOrder(sorted, id)
		for b, block := range blocks {
			first := order[b*campaignRun]
			start := slices.Index(block, first)
			if start < 0 {
				t.Fatalf("%s: run %d begins with %s, not in block %d", id, b, first, b)
			}
			var walked []string
			for from := b * campaignRun; from < len(order); from += len(blocks) * campaignRun {
				walked = append(walked, order[from:min(from+campaignRun, len(order))]...)
			}
			if want := slices.Concat(block[start:], block[:start]); !slices.Equal(walked[:len(want)], want) {
				t.Errorf("%s: block %d is not walked from %s in runs of %d", id, b, first, campaignRun)
			}
			firsts[id] = append(firsts[id], first)
		}
	}
	for b := range blocks {
		if firsts["a"][b] == firsts["b"][b] {
			t.Errorf("a and b both begin block %d at %s", b, firsts["a"][b])
		}
	}
}

// TestCampaignOrdersShareOutTheKeysNearlyFairly races P candidates for 10,000
// keys the way a cold start does: in turn, each takes its next key in its
// campaign order if nobody has it yet. With one offset for all keys, the
// largest share is the largest of P random gaps between offsets: 53% of the
// keys on average for four candidates. With an offset per block it is an
// average over the blocks: 32%.
func TestCampaignOrdersShareOutTheKeysNearlyFairly(t *testing.T) {
	const sets = 40
	resources := numbered("r%05d", 10000)
	for _, p := range []int{2, 4, 8} {
		total := 0
		for set := range sets {
			orders := make([][]string, p)
			for i := range orders {
				orders[i] = inCampaignOrder(resources, fmt.Sprintf("candidate-%d-%d", set, i))
			}
			holder := map[string]bool{}
			shares := make([]int, p)
			for step := 0; len(holder) < len(resources); step++ {
				for i, order := range orders {
					if !holder[order[step]] {
						holder[order[step]] = true
						shares[i]++
					}
				}
			}
			total += slices.Max(shares)
		}
		mean, fair := float64(total)/sets/float64(len(resources)), 1/float64(p)
		if mean > fair+0.10 {
			t.Errorf("%d candidates: the largest share is %.1f%% of the keys on average over %d races; want at most %.1f%% (fair %.1f%%, + 10%%)",
				p, 100*mean, sets, 100*(fair+0.10), 100*fair)
		}
	}
}
