//go:build linux

package main

import (
	"strings"
	"testing"
	"time"
)

func TestDemoRunsToTheEndAndStopsItsAgent(t *testing.T) {
	demo := start(t, "demo", nil, "demo")
	if code := demo.exitCode(90 * time.Second); code != 0 {
		t.Fatalf("demo exited with %d:\n%s", code, demo.output.String())
	}
	out := demo.output.String()
	for _, want := range []string{"● ", "1. Destroying", "2. ", "resigns", "Failover times: session destroyed", "Stopping the Consul agent."} {
		if !strings.Contains(out, want) {
			t.Fatalf("the demo's output does not say %q:\n%s", want, out)
		}
	}
}
