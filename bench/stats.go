package bench

import (
	"math"
	"slices"
	"strconv"
	"time"
)

// Sample is a set of measured durations.
type Sample []time.Duration

// Percentile returns the nearest-rank percentile p (0 < p ≤ 100).
func (s Sample) Percentile(p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

// Max returns the largest duration.
func (s Sample) Max() time.Duration {
	if len(s) == 0 {
		return 0
	}
	return slices.Max(s)
}

// Min returns the smallest duration.
func (s Sample) Min() time.Duration {
	if len(s) == 0 {
		return 0
	}
	return slices.Min(s)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
