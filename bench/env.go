package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/excalibur/consul-elect/consul"
)

// Env is what every figure shares: the agent, an operator client that is not
// counted, and a key prefix of its own for this run.
type Env struct {
	// URL of the agent's HTTP API.
	URL string
	// Operator destroys sessions and watches keys for the harness itself.
	Operator *consul.Client
	// Prefix is this run's KV prefix; each figure takes a sub-prefix.
	Prefix string
	// AllHeld, when set, is called by figure 5 once every resource is held,
	// before anything else is measured (electbench writes its heap profile).
	AllHeld  func()
	progress io.Writer
	seq      atomic.Int64
}

// NewEnv prepares a run against the agent at url. Progress lines go to
// progress (nil: none).
func NewEnv(url string, progress io.Writer) (*Env, error) {
	operator, err := consul.NewClient(consul.Config{Address: url})
	if err != nil {
		return nil, err
	}
	if progress == nil {
		progress = io.Discard
	}
	return &Env{URL: url, Operator: operator, Prefix: fmt.Sprintf("bench/run-%d", time.Now().UnixNano()), progress: progress}, nil
}

// Close closes the operator client.
func (e *Env) Close() { e.Operator.Close() }

// prefix returns a fresh KV prefix for name.
func (e *Env) prefix(name string) string {
	return fmt.Sprintf("%s/%s-%d", e.Prefix, name, e.seq.Add(1))
}

// candidateID returns a candidate id no other candidate of this run has
// (FastFailover names the candidate's service on the agent after it).
func (e *Env) candidateID(name string) string {
	return fmt.Sprintf("%s-%d", name, e.seq.Add(1))
}

func (e *Env) logf(format string, args ...any) {
	fmt.Fprintf(e.progress, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// Machine describes where a run happened.
type Machine struct {
	Date          time.Time
	Cores         int
	GOMAXPROCS    int
	CPU           string
	OS            string
	GoVersion     string
	ConsulVersion string
}

// DescribeMachine reads the machine and asks the agent its version.
func DescribeMachine(ctx context.Context, url string) Machine {
	m := Machine{Date: time.Now().UTC(), Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		OS: runtime.GOOS + "/" + runtime.GOARCH, GoVersion: runtime.Version(), CPU: cpuModel(), ConsulVersion: "unknown"}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/agent/self", nil)
	if err != nil {
		return m
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	var self struct {
		Config struct{ Version, Revision string }
	}
	if json.NewDecoder(resp.Body).Decode(&self) == nil && self.Config.Version != "" {
		m.ConsulVersion = self.Config.Version
	}
	return m
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if name, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
		}
	}
	return "unknown"
}
