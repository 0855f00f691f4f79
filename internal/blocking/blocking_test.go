package blocking_test

import (
	"testing"

	"github.com/excalibur/consul-elect/internal/blocking"
)

func TestNextIndexFollowsConsulsRules(t *testing.T) {
	for _, tc := range []struct{ prev, got, want uint64 }{
		{0, 5, 5}, {5, 9, 9}, {9, 3, 0}, {0, 0, 1}, {7, 7, 7},
	} {
		if got := blocking.NextIndex(tc.prev, tc.got); got != tc.want {
			t.Errorf("NextIndex(%d, %d) = %d; want %d", tc.prev, tc.got, got, tc.want)
		}
	}
}
