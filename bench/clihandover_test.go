package bench_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/bench"
)

// TestCLIHandoverRunsAtTinySize runs figure 1b end to end: both command
// lines are built, hand over twice each, and report a value for both.
// Nothing about speed is asserted.
func TestCLIHandoverRunsAtTinySize(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("figure 1b runs on Linux (Pdeathsig)")
	}
	env, err := bench.NewEnv(agent.URL(), testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := bench.CLIHandover(ctx, env, bench.TinyCLIConfig())
	var table strings.Builder
	bench.WriteTable(&table, []bench.Figure{f})
	bench.WriteNotes(&table, []bench.Figure{f})
	t.Log("\n" + table.String())
	if f.Err != nil {
		t.Fatal(f.Err)
	}
	for _, r := range f.Rows {
		if !r.Elect.Valid || !r.Ref.Valid {
			t.Errorf("%s / %s: consul-elect %s, api.Lock %s; want both", r.Figure, r.Measure, r.Elect, r.Ref)
		}
	}
}
