// Command electbench runs the benchmark harness (package bench): it starts its own
// Consul dev agent (internal/devconsul, default limits), measures
// consul-elect and HashiCorp's api.Lock side by side on it, and prints the
// results as a Markdown table with ratios.
//
//	go run ./bench/cmd/electbench all           # every figure (the default)
//	go run ./bench/cmd/electbench handover      # figure 1
//	go run ./bench/cmd/electbench cli-handover  # figure 1b (consul-elect run against an api.Lock CLI)
//	go run ./bench/cmd/electbench failover      # figure 2
//	go run ./bench/cmd/electbench fastfailover  # figure 3
//	go run ./bench/cmd/electbench idle          # figure 4
//	go run ./bench/cmd/electbench scale         # figure 5 (in a child process, for a clean RSS)
//	go run ./bench/cmd/electbench micro         # figure 6 (go test -bench in bench/micro)
//	go run ./bench/cmd/electbench fleet -p 4 -k 10000  # figure 7 (P candidate processes, K resources)
//
// all is figures 1–6; figure 7 takes minutes and runs only when named.
// Figures may also be given as -figure a,b. Flags size them (see -help),
// before or after the figure names. Progress goes to stderr, the report
// (Markdown) to stdout.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/excalibur/consul-elect/bench"
	"github.com/excalibur/consul-elect/internal/devconsul"
)

// figureNames are the figures of "all", in the order they run; fleet runs
// after them, only when named.
var figureNames = []string{"handover", "cli-handover", "failover", "fastfailover", "idle", "scale", "micro"}

// cliConfig sizes figure 1b.
var cliConfig = bench.DefaultCLIConfig()

const fleetFigure = "fleet"

func main() {
	if len(os.Args) > 1 && os.Args[1] == bench.FleetCandidateArg {
		// One candidate process of figure 7, started by this program.
		os.Exit(bench.RunFleetCandidate(os.Args[2:], os.Stdin, os.Stdout))
	}
	cfg := bench.DefaultConfig()
	figures := flag.String("figure", "all", "comma-separated figures to run: "+strings.Join(figureNames, ", ")+", "+fleetFigure+", or all (figures 1–6; or name them as arguments)")
	flag.IntVar(&cfg.Handovers, "handovers", cfg.Handovers, "figure 1: measured handovers per implementation")
	flag.IntVar(&cliConfig.Handovers, "cli-handovers", cliConfig.Handovers, "figure 1b: measured handovers per command line")
	flag.IntVar(&cfg.FailoverSamples, "failover-samples", cfg.FailoverSamples, "figure 2: samples per implementation and variant")
	flag.DurationVar(&cfg.FailoverTTL, "failover-ttl", cfg.FailoverTTL, "figure 2: session TTL of the leader that dies")
	flag.DurationVar(&cfg.LockDelay, "lock-delay", cfg.LockDelay, "figure 2: lock-delay L")
	flag.IntVar(&cfg.FastFailoverSamples, "fast-samples", cfg.FastFailoverSamples, "figure 3: api.Lock baseline samples (0 skips)")
	flag.DurationVar(&cfg.FastFailoverTTL, "fast-ttl", cfg.FastFailoverTTL, "figure 3: api.Lock's session TTL")
	sizes := flag.String("idle-sizes", joinInts(cfg.IdleSizes), "figure 4: numbers of idle resources")
	flag.DurationVar(&cfg.IdleWindow, "idle-window", cfg.IdleWindow, "figure 4: how long requests are counted")
	flag.DurationVar(&cfg.IdleTTL, "idle-ttl", cfg.IdleTTL, "figure 4: session TTL")
	flag.IntVar(&cfg.ScaleResources, "scale-resources", cfg.ScaleResources, "figure 5: resources in one process")
	flag.DurationVar(&cfg.ScaleTimeout, "scale-timeout", cfg.ScaleTimeout, "figure 5: bound on the wait for all to be held")
	scaleChild := flag.Bool("scale-child", false, "internal: run figure 5 in this process against -consul and print JSON")
	consulURL := flag.String("consul", "", "internal (with -scale-child): the agent's URL")
	cpuProfile := flag.String("scale-cpuprofile", "", "figure 5: write a CPU profile of the scale run to this file")
	memProfile := flag.String("scale-memprofile", "", "figure 5: write a heap profile to this file once every resource is held (go tool pprof -sample_index=inuse_space: the live heap then; alloc_space: every allocation until then)")
	flag.IntVar(&cfg.FleetProcesses, "p", cfg.FleetProcesses, "figure 7: candidate processes")
	flag.IntVar(&cfg.FleetResources, "k", cfg.FleetResources, "figure 7: resources, shared by every candidate")
	flag.DurationVar(&cfg.FleetIdle, "fleet-idle", cfg.FleetIdle, "figure 7: how long idle requests are counted")
	flag.DurationVar(&cfg.FleetChurn, "fleet-churn", cfg.FleetChurn, "figure 7: how long an operator releases held keys")
	flag.IntVar(&cfg.FleetRate, "fleet-rate", cfg.FleetRate, "figure 7: releases per second during the churn")
	flag.DurationVar(&cfg.FleetSettle, "fleet-settle", cfg.FleetSettle, "figure 7: pause after all are held, after the churn and after each restart")
	flag.DurationVar(&cfg.FleetTimeout, "fleet-timeout", cfg.FleetTimeout, "figure 7: bound on the cold start and on each takeover")
	flag.StringVar(&cfg.FleetOptions, "fleet-options", cfg.FleetOptions, `figure 7: JSON decoded over every candidate's consulelect.DefaultOptions(), e.g. '{"SessionTTL":10000000000}' (durations in ns)`)
	serverAgent := flag.Bool("server-agent", false, "run the agent as a single server with its state on disk (in a temporary directory) instead of in -dev mode, which pretty-prints every answer and keeps its state in memory")
	flag.Parse()
	// Flags may follow the figure names too: electbench fleet -p 4 -k 10000.
	var names []string
	for flag.NArg() > 0 {
		names = append(names, flag.Arg(0))
		if err := flag.CommandLine.Parse(flag.Args()[1:]); err != nil {
			os.Exit(2)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *scaleChild {
		os.Exit(runScaleChild(ctx, *consulURL, cfg, *cpuProfile, *memProfile))
	}
	var err error
	if cfg.IdleSizes, err = parseInts(*sizes); err != nil {
		fmt.Fprintln(os.Stderr, "-idle-sizes:", err)
		os.Exit(2)
	}
	if len(names) > 0 {
		*figures = strings.Join(names, ",")
	}
	if cfg.FleetProcesses < 1 || cfg.FleetResources < 1 || cfg.FleetRate < 1 {
		fmt.Fprintln(os.Stderr, "-p, -k and -fleet-rate must be at least 1")
		os.Exit(2)
	}
	selected, err := selectFigures(*figures)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(run(ctx, cfg, selected, *serverAgent, []string{"-scale-cpuprofile", *cpuProfile, "-scale-memprofile", *memProfile}))
}

func run(ctx context.Context, cfg bench.Config, selected map[string]bool, serverAgent bool, profiles []string) int {
	progress := os.Stderr
	var env *bench.Env
	var agent *devconsul.Agent
	needsAgent := len(selected) > 1 || !selected["micro"]
	url := ""
	kind, agentCfg := "dev agent", devconsul.Config{}
	if serverAgent {
		dir, err := os.MkdirTemp("", "electbench-consul-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		kind, agentCfg.DataDir = "single server, state on disk", dir
	}
	if needsAgent {
		logf(progress, "starting a Consul agent: %s (internal/devconsul, default limits)", kind)
		startCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		a, err := devconsul.Start(startCtx, agentCfg)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		agent = a
		defer func() { _ = agent.Stop() }()
		url = agent.URL()
		if env, err = bench.NewEnv(url, progress); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer env.Close()
	} else {
		env, _ = bench.NewEnv("http://127.0.0.1:1", progress)
	}

	machine := bench.DescribeMachine(ctx, url)
	began := time.Now()
	var results []bench.Figure
	for _, name := range append(figureNames, fleetFigure) {
		if !selected[name] || ctx.Err() != nil {
			continue
		}
		t0 := time.Now()
		var f bench.Figure
		switch name {
		case "handover":
			f = bench.Handover(ctx, env, cfg)
		case "cli-handover":
			f = bench.CLIHandover(ctx, env, cliConfig)
		case "failover":
			f = bench.Failover(ctx, env, cfg)
		case "fastfailover":
			f = bench.FastFailover(ctx, env, cfg)
		case "idle":
			f = bench.Idle(ctx, env, cfg)
		case "scale":
			f = scaleInChild(ctx, url, cfg, profiles)
		case "micro":
			f = bench.Micro(ctx, env)
		case fleetFigure:
			f = bench.Fleet(ctx, env, cfg, fleetSpawn)
		}
		logf(progress, "%s done in %s", f.Name, time.Since(t0).Round(time.Second))
		results = append(results, f)
	}

	out := os.Stdout
	fmt.Fprintf(out, "Command: `%s`\n\n", commandLine())
	fmt.Fprintf(out, "Date: %s; total %s\n\n", machine.Date.Format(time.RFC3339), time.Since(began).Round(time.Second))
	fmt.Fprintf(out, "Machine: %d cores (GOMAXPROCS %d), %s, %s, %s; Consul %s (%s, default limits)\n\n",
		machine.Cores, machine.GOMAXPROCS, machine.CPU, machine.OS, machine.GoVersion, machine.ConsulVersion, kind)
	fmt.Fprintln(out, "Every measure is better lower; a ratio below 1 means consul-elect is faster or cheaper.")
	fmt.Fprintln(out)
	bench.WriteTable(out, results)
	bench.WriteNotes(out, results)
	for _, f := range results {
		if f.Err != nil {
			return 1
		}
	}
	return 0
}

// scaleInChild runs figure 5 in a child process of this binary, so that its
// peak RSS is the figure's own and not the harness's.
func scaleInChild(ctx context.Context, url string, cfg bench.Config, profiles []string) bench.Figure {
	refLimit := "not run (stops at ~190, figure 4)"
	fail := func(err error) bench.Figure {
		f := bench.Figure{Name: "Figure 5: scale", Err: err}
		return f
	}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.ScaleTimeout+2*time.Minute)
	defer cancel()
	args := []string{"-scale-child", "-consul", url,
		"-scale-resources", strconv.Itoa(cfg.ScaleResources), "-scale-timeout", cfg.ScaleTimeout.String()}
	for i := 0; i+1 < len(profiles); i += 2 {
		if profiles[i+1] != "" {
			args = append(args, profiles[i], profiles[i+1])
		}
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	var res bench.ScaleResult
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		if err == nil {
			err = jerr
		}
		return fail(fmt.Errorf("scale child: %w", err))
	}
	f := bench.ScaleFigure(res, cfg.ScaleTimeout, refLimit)
	if err != nil {
		f.Err = fmt.Errorf("scale child: %w", err)
	}
	return f
}

// fleetSpawn starts one candidate process of figure 7: this program again.
func fleetSpawn(args []string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	return exec.Command(self, append([]string{bench.FleetCandidateArg}, args...)...)
}

func runScaleChild(ctx context.Context, url string, cfg bench.Config, cpuProfile, memProfile string) int {
	if url == "" {
		fmt.Fprintln(os.Stderr, "-scale-child needs -consul")
		return 2
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	env, err := bench.NewEnv(url, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer env.Close()
	if memProfile != "" {
		runtime.MemProfileRate = 64 * 1024
		env.AllHeld = func() {
			runtime.GC() // the profile's in-use figures are as of the last GC
			if err := writeHeapProfile(memProfile); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}
	}
	res, err := bench.Scale(ctx, env, cfg.ScaleResources, cfg.ScaleTimeout)
	if jerr := json.NewEncoder(os.Stdout).Encode(res); jerr != nil {
		fmt.Fprintln(os.Stderr, jerr)
		return 1
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("allocs").WriteTo(f, 0)
}

func selectFigures(list string) (map[string]bool, error) {
	selected := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "all" {
			for _, n := range figureNames {
				selected[n] = true
			}
			continue
		}
		known := name == fleetFigure
		for _, n := range figureNames {
			known = known || n == name
		}
		if !known {
			return nil, fmt.Errorf("unknown figure %q; choose from %s, %s, all", name, strings.Join(figureNames, ", "), fleetFigure)
		}
		selected[name] = true
	}
	return selected, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, field := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", field)
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(ns []int) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

func commandLine() string {
	args := append([]string{"go run ./bench/cmd/electbench"}, os.Args[1:]...)
	return strings.Join(args, " ")
}

func logf(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}
