// Package blocking holds the one rule that Consul's blocking queries share:
// which index to wait at next. Package consul follows it against Consul, and
// package inmem models it.
package blocking

// NextIndex returns the index for the next blocking query after one that
// waited at prev and answered got, following Consul's rules: an index that
// went backwards (a restarted agent, a snapshot restore) starts over from 0,
// which reads at once, and a 0 answer is treated as 1 so that the next query
// blocks instead of spinning.
func NextIndex(prev, got uint64) uint64 {
	switch {
	case got < prev:
		return 0
	case got == 0:
		return 1
	}
	return got
}
