package actors

import (
	"slices"
	"strings"
)

// The key watch is sharded when an engine campaigns for many resources:
// Consul KV prefixes are string prefixes, so sub-prefixes of <KeyPrefix>/
// chosen from the campaigned names (<KeyPrefix>/shard-0 for shard-00000 …
// shard-09999) split the listing without changing the key layout. A change
// of one key then re-reads only its shard, not every key. Each shard is one
// blocking query, so the shards fit in the connection budget.
const (
	// shardAbove is the number of campaigned resources from which the watch
	// is sharded; below it one listing is cheap enough.
	shardAbove = 1000
	// longPollsBeside are the connections left for what is not a key
	// watch: the registry watch, a health watch, renewals and writes.
	longPollsBeside = 4
)

// shardPrefixes splits names into at most max groups, each the names that
// share a prefix (the resource part of a key: "" is every key), splitting the
// largest group by its next character while the result fits. Every name is
// under exactly one prefix, and none of the prefixes is a prefix of another.
func shardPrefixes(names []string, max int) []string {
	type group struct {
		prefix string
		names  []string
		whole  bool // cannot be split: a name is the prefix itself, or one next character
	}
	groups := []group{{prefix: "", names: slices.Sorted(slices.Values(names))}}
	if len(names) < shardAbove {
		return []string{""}
	}
	for {
		largest := -1
		for i, g := range groups {
			if !g.whole && (largest < 0 || len(g.names) > len(groups[largest].names)) {
				largest = i
			}
		}
		if largest < 0 || len(groups[largest].names) < shardAbove/2 {
			break
		}
		g := groups[largest]
		var children []group
		for _, name := range g.names {
			if len(name) == len(g.prefix) {
				children = nil // the prefix is a name: its children would not cover it
				break
			}
			next := name[:len(g.prefix)+1]
			if n := len(children); n > 0 && children[n-1].prefix == next {
				children[n-1].names = append(children[n-1].names, name)
			} else {
				children = append(children, group{prefix: next, names: []string{name}})
			}
		}
		switch {
		case len(children) == 0, len(groups)-1+len(children) > max:
			groups[largest].whole = true
		case len(children) == 1:
			groups[largest] = children[0] // a longer common prefix; try again
		default:
			groups = slices.Concat(groups[:largest], children, groups[largest+1:])
		}
	}
	prefixes := make([]string, len(groups))
	for i, g := range groups {
		prefixes[i] = g.prefix
	}
	return prefixes
}

// shardOf returns the index of the prefix that resource falls under, or -1.
func shardOf(prefixes []string, resource string) int {
	return slices.IndexFunc(prefixes, func(p string) bool { return strings.HasPrefix(resource, p) })
}
