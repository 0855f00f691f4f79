package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// MicroPackage holds figure 6's benchmarks.
const MicroPackage = "github.com/excalibur/consul-elect/bench/micro"

// MicroArgs is the go command figure 6 runs.
var MicroArgs = []string{"test", "-run", "^$", "-bench", ".", "-benchmem", MicroPackage}

// Micro is figure 6: it runs the micro benchmarks with the go command (they
// need no agent) and turns each result into a row.
func Micro(ctx context.Context, env *Env) Figure {
	f := Figure{Name: "Figure 6: micro (in-memory backend, go test -bench)"}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	env.logf("figure 6: go %s", strings.Join(MicroArgs, " "))
	cmd := exec.CommandContext(ctx, "go", MicroArgs...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		f.Err = fmt.Errorf("go %s: %w\n%s", strings.Join(MicroArgs, " "), err, out.String())
		return f
	}
	scanner := bufio.NewScanner(&out)
	for scanner.Scan() {
		line := scanner.Text()
		fields := strings.Fields(line)
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(fields[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i] // the GOMAXPROCS suffix
		}
		metrics := map[string]string{}
		for i := 2; i+1 < len(fields); i += 2 {
			metrics[fields[i+1]] = fields[i]
		}
		value := Missing(strings.Join(fields[1:], " "))
		if allocs, ok := metrics["allocs/op"]; ok {
			value = Missing(fmt.Sprintf("%s allocs/op, %s B/op, %s ns/op", allocs, metrics["B/op"], metrics["ns/op"]))
		}
		f.Rows = append(f.Rows, Row{Figure: "6 micro", Measure: name, Elect: value, Ref: Missing("—")})
	}
	f.notef("command: go %s (allocations are the whole process's during the timed loop, in-memory backend included)", strings.Join(MicroArgs, " "))
	return f
}
