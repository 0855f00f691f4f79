package bench_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/bench"
	"github.com/excalibur/consul-elect/internal/devconsul"
)

var agent *devconsul.Agent

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == bench.FleetCandidateArg {
		// A candidate process of TestFleetRunsAtTinySize: this binary again.
		os.Exit(bench.RunFleetCandidate(os.Args[2:], os.Stdin, os.Stdout))
	}
	devconsul.Main(m, &agent)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestEveryFigureRunsAtTinySize proves the harness works end to end: each
// figure runs at the smallest size against a real agent and reports a value
// for consul-elect (and for api.Lock where it has one). Nothing about speed
// is asserted.
func TestEveryFigureRunsAtTinySize(t *testing.T) {
	env, err := bench.NewEnv(agent.URL(), testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := bench.TinyConfig()

	var figures []bench.Figure
	for _, run := range []func() bench.Figure{
		func() bench.Figure { return bench.Handover(ctx, env, cfg) },
		func() bench.Figure { return bench.Failover(ctx, env, cfg) },
		func() bench.Figure { return bench.FastFailover(ctx, env, cfg) },
		func() bench.Figure { return bench.Idle(ctx, env, cfg) },
		func() bench.Figure {
			res, err := bench.Scale(ctx, env, cfg.ScaleResources, cfg.ScaleTimeout)
			f := bench.ScaleFigure(res, cfg.ScaleTimeout, "not run")
			f.Err = err
			return f
		},
	} {
		f := run()
		figures = append(figures, f)
		if f.Err != nil {
			t.Errorf("%s: %v", f.Name, f.Err)
		}
		if len(f.Rows) == 0 {
			t.Errorf("%s: no rows", f.Name)
		}
	}
	var table strings.Builder
	bench.WriteTable(&table, figures)
	bench.WriteNotes(&table, figures)
	t.Log("\n" + table.String())

	for _, f := range figures {
		for _, r := range f.Rows {
			if !r.Elect.Valid {
				t.Errorf("%s / %s: no consul-elect value: %s", r.Figure, r.Measure, r.Elect)
			}
		}
	}
	if fig3 := figures[2].Rows[0]; !fig3.Ref.Valid {
		t.Errorf("figure 3 row = %+v; want an api.Lock baseline", fig3)
	}
}
