package actors

import (
	"fmt"
	"slices"
	"testing"

	"github.com/excalibur/consul-elect/messages"
)

func TestIndexCandidatesSharesTheListOfResourcesWithTheSameCandidates(t *testing.T) {
	var shared []string
	for i := range 1000 {
		shared = append(shared, fmt.Sprintf("shard-%04d", i))
	}
	all := []messages.Candidate{ // highest priority first
		{ID: "a", Priority: 2, Resources: append(slices.Clone(shared), "only-a")},
		{ID: "b", Priority: 1, Resources: append(slices.Clone(shared), "b-and-c")},
		{ID: "c", Priority: 0, Resources: append([]string{"b-and-c"}, shared...)},
	}
	of := indexCandidates(all)

	ids := func(list []messages.Candidate) []string {
		var out []string
		for _, c := range list {
			out = append(out, c.ID)
		}
		return out
	}
	for resource, want := range map[string][]string{
		"shard-0000": {"a", "b", "c"}, "shard-0999": {"a", "b", "c"}, "only-a": {"a"}, "b-and-c": {"b", "c"},
	} {
		if got := ids(of[resource]); !slices.Equal(got, want) {
			t.Errorf("%s: candidates %q; want %q, in the registry's order", resource, got, want)
		}
	}
	if len(of) != len(shared)+2 {
		t.Errorf("%d resources indexed; want %d", len(of), len(shared)+2)
	}
	first := &of["shard-0000"][0]
	for _, resource := range shared {
		if &of[resource][0] != first {
			t.Fatalf("%s has a list of its own: resources with the same candidates must share one", resource)
		}
	}
}
