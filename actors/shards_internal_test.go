package actors

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestShardPrefixesCoverEveryNameOnceWithinTheBudget(t *testing.T) {
	numbered := func(format string, n int) []string {
		var names []string
		for i := range n {
			names = append(names, fmt.Sprintf(format, i))
		}
		return names
	}
	for _, tc := range []struct {
		name  string
		names []string
		max   int
		want  []string
	}{
		{"few resources: one listing", numbered("shard-%05d", 999), 12, []string{""}},
		{"ten thousand numbered", numbered("shard-%05d", 10000), 12,
			[]string{"shard-00", "shard-01", "shard-02", "shard-03", "shard-04", "shard-05", "shard-06", "shard-07", "shard-08", "shard-09"}},
		{"a budget too small for the next split", numbered("shard-%05d", 10000), 4, []string{"shard-0"}},
		{"a name that is a prefix of others", append(numbered("s%04d", 2000), "s"), 12, []string{"s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := shardPrefixes(tc.names, tc.max)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("shards %q; want %q", got, tc.want)
			}
			if len(got) > tc.max {
				t.Fatalf("%d shards; the budget is %d", len(got), tc.max)
			}
			for _, name := range tc.names {
				n := 0
				for _, p := range got {
					if strings.HasPrefix(name, p) {
						n++
					}
				}
				if n != 1 {
					t.Fatalf("%q is under %d shards", name, n)
				}
			}
		})
	}
}
