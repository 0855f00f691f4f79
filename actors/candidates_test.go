package actors_test

import (
	"slices"
	"testing"
)

// TestStateAnswersWithACopyOfTheCandidates: inside the engine, the resources
// that the same candidates campaign for share one list of them. A State
// answer, from a lock or from the root, is the caller's to change.
func TestStateAnswersWithACopyOfTheCandidates(t *testing.T) {
	prefix := testPrefix(t)
	var campaigners []*candidate
	for _, id := range []string{"a", "b"} {
		c := startCandidate(t, withPrefix(fastOptions(t, shared, id), prefix))
		c.campaign("jobs")
		c.campaign("mail")
		campaigners = append(campaigners, c)
	}
	onlooker := startCandidate(t, withPrefix(fastOptions(t, shared, "c"), prefix)) // no lock: the root answers
	for _, c := range append(campaigners, onlooker) {
		knows(t, c, "jobs", "a", "b")
		knows(t, c, "mail", "a", "b")

		st := c.state("jobs")
		for i := range st.Candidates {
			st.Candidates[i].ID = "changed by the caller"
		}
		for _, resource := range []string{"mail", "jobs"} {
			var ids []string
			for _, m := range c.state(resource).Candidates {
				ids = append(ids, m.ID)
			}
			if slices.Sort(ids); !slices.Equal(ids, []string{"a", "b"}) {
				t.Fatalf("%s: after a caller changed a State's candidates, %s lists %q; want a and b", c.id, resource, ids)
			}
		}
	}
}
