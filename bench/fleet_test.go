package bench_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/bench"
)

// TestFleetRunsAtTinySize proves figure 7 works end to end: two candidate
// processes (this test binary, re-executed with bench.FleetCandidateArg)
// share 200 resources through every phase, and each measure has a value.
// Nothing about speed is asserted.
func TestFleetRunsAtTinySize(t *testing.T) {
	env, err := bench.NewEnv(agent.URL(), testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	spawn := func(args []string) *exec.Cmd {
		return exec.Command(self, append([]string{bench.FleetCandidateArg}, args...)...)
	}
	f := bench.Fleet(ctx, env, bench.TinyConfig(), spawn)

	var table strings.Builder
	bench.WriteTable(&table, []bench.Figure{f})
	bench.WriteNotes(&table, []bench.Figure{f})
	t.Log("\n" + table.String())
	if f.Err != nil {
		t.Fatal(f.Err)
	}
	if len(f.Rows) == 0 {
		t.Fatal("no rows")
	}
	for _, r := range f.Rows {
		if !r.Elect.Valid {
			t.Errorf("%s: no value: %s", r.Measure, r.Elect)
		}
	}
}
