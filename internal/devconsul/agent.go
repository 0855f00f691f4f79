// Package devconsul builds and runs a real HashiCorp Consul agent for tests
// and demos: no mocks, just the consul binary on loopback with random ports.
//
// Every agent is tuned for tests but otherwise behaves like production
// Consul: session_ttl_min is lowered to 1s so leader-election tests can use
// short session TTLs, Raft runs at raft_multiplier = 1, and DNS and gRPC are
// switched off so that any number of agents can share the machine. Consul's
// request limits are left at their defaults on purpose, so that code tested
// here meets the same limits it will meet in production.
//
// Start runs one agent; StartCluster runs a datacenter of server and client
// agents, for tests of Consul's own failures (a raft leader killed, a client
// agent restarted or crashed).
//
// The agents run ConsulVersion, built once from the Go module proxy and
// cached (see Binary). To run the tests against another release once, set
// CONSUL_ELECT_CONSUL_VERSION (e.g. v1.15.6): that release is built from
// its own go.mod and go.sum and cached beside the default one; one whose
// dependencies no longer build from the proxy fails with go build's error.
// CONSUL_ELECT_CONSUL_BIN instead names a ready-made binary.
//
// The package talks to Consul over plain net/http rather than the official
// client: only this project's consul package may depend on
// github.com/hashicorp/consul/api.
package devconsul

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config describes one agent. The zero value is a single in-memory -dev
// agent in datacenter dc1.
type Config struct {
	// Datacenter defaults to "dc1".
	Datacenter string
	// DataDir empty runs `consul agent -dev`, whose state lives in memory and
	// is lost on Restart. Set, it runs a real single-server agent
	// (-server, bootstrap_expect = 1) whose state survives Restart. The
	// directory is the caller's: Stop never removes it.
	DataDir string
	// NodeName defaults to a unique "devconsul-<random>".
	NodeName string
	// ACLDefaultDeny enables ACLs with default policy deny and token
	// persistence. The agent's management token is in Agent.ManagementToken;
	// it is also the agent's own token so that the node can register itself.
	ACLDefaultDeny bool
	// JoinWAN lists serf WAN addresses (another Agent's SerfWANAddr) to join,
	// to federate a second datacenter. Start then also waits until the
	// federation is visible in /v1/catalog/datacenters.
	JoinWAN []string
	// ExtraHCL is written to a second config file that Consul merges after
	// the harness's own, so it can override any setting above.
	ExtraHCL string
	// Log receives the agent's stdout and stderr; nil discards them. The
	// last lines are kept regardless and attached to errors.
	Log io.Writer
}

// Agent is a running (or stopped) consul agent process.
type Agent struct {
	// ManagementToken is a management ACL token when Config.ACLDefaultDeny
	// is set, and empty otherwise.
	ManagementToken string

	cfg      Config
	bin      string
	dir      string // temp dir holding the config files; removed by Stop
	nodeName string
	member   *member // its part in a Cluster; nil for a standalone agent
	ports    ports
	log      *logRing
	http     *http.Client

	mu      sync.Mutex
	proc    *process // nil before the first launch
	stopped bool
}

type ports struct {
	http, serfLAN, serfWAN, server int
}

// member is an agent's part in a Cluster.
type member struct {
	server bool
	// bootstrapExpect is the number of servers a server waits for before
	// the first raft election.
	bootstrapExpect int
	// join lists the serf LAN addresses of the cluster's servers.
	join []string
	// gossipKey encrypts the cluster's serf traffic (base64, 32 bytes).
	gossipKey string
}

// process is one run of the consul binary.
type process struct {
	cmd      *exec.Cmd
	exited   chan struct{} // closed once cmd.Wait has returned
	waitErr  error         // valid after exited is closed
	signaled bool          // we asked it to stop, so exiting is not a crash
}

const (
	// readyTimeout bounds how long Start and Restart wait for an agent that
	// has started but not yet become usable. A healthy agent needs 1–5 s.
	readyTimeout = 60 * time.Second
	// stopGrace is how long a SIGTERMed agent may take to shut down before
	// it is killed.
	stopGrace = 10 * time.Second
	// startAttempts bounds retries when a randomly chosen port turns out to
	// be taken by the time Consul binds it.
	startAttempts = 3
)

// Start launches an agent and waits until it is usable: it has a leader, its
// node is registered (so sessions can be created) and, with JoinWAN, it sees
// another datacenter. On error nothing is left running.
func Start(ctx context.Context, cfg Config) (*Agent, error) {
	// A first build of Consul takes minutes; say so where a human looks.
	bin, err := Binary(ctx, os.Stderr)
	if err != nil {
		return nil, err
	}
	a, err := newAgent(bin, cfg, nil)
	if err != nil {
		return nil, err
	}
	if err := a.start(ctx, nil); err != nil {
		return nil, err
	}
	return a, nil
}

// newAgent prepares an agent (its temp dir, token and node name) without
// starting it. m is its part in a cluster, nil for a standalone agent.
func newAgent(bin string, cfg Config, m *member) (*Agent, error) {
	if cfg.Datacenter == "" {
		cfg.Datacenter = "dc1"
	}
	a := &Agent{
		cfg:      cfg,
		bin:      bin,
		nodeName: cfg.NodeName,
		member:   m,
		log:      newLogRing(cfg.Log),
		// No keep-alives: idle connections would leave goroutines behind
		// after Stop, and goleak-checked tests must end clean.
		http: &http.Client{
			Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, ExpectContinueTimeout: time.Second},
		},
	}
	if a.nodeName == "" {
		a.nodeName = "devconsul-" + randomHex(4)
	}
	if cfg.ACLDefaultDeny {
		a.ManagementToken = randomUUID()
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("devconsul: create data dir: %w", err)
		}
	}
	var err error
	a.dir, err = os.MkdirTemp("", "devconsul-*")
	if err != nil {
		return nil, fmt.Errorf("devconsul: %w", err)
	}
	return a, nil
}

// start launches the agent for the first time and waits until it is ready,
// on the given ports if not nil (a cluster picks everyone's ports up front so
// that agents can name each other), else on fresh ones. On error it leaves
// nothing running and removes the temp dir.
func (a *Agent) start(ctx context.Context, first *ports) error {
	for attempt := 1; ; attempt++ {
		p := first
		if attempt > 1 || p == nil {
			fresh, err := freePorts()
			if err != nil {
				_ = os.RemoveAll(a.dir)
				return err
			}
			p = &fresh
		}
		err := a.startOn(ctx, *p)
		if err == nil {
			return nil
		}
		// Ports are picked by probing, so another process can grab one
		// between the probe and Consul's bind. That is worth another try;
		// nothing else is.
		if attempt == startAttempts || !strings.Contains(a.log.Tail(), "address already in use") {
			_ = os.RemoveAll(a.dir)
			return err
		}
	}
}

func (a *Agent) startOn(ctx context.Context, p ports) error {
	a.ports = p
	if err := a.writeConfig(); err != nil {
		return err
	}
	// Only this attempt's output may decide whether to retry.
	a.log.reset()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.launch(ctx)
}

// HTTPAddr is the agent's HTTP API address, "127.0.0.1:PORT".
func (a *Agent) HTTPAddr() string { return loopback(a.ports.http) }

// URL is the agent's HTTP API base URL, "http://127.0.0.1:PORT".
func (a *Agent) URL() string { return "http://" + a.HTTPAddr() }

// SerfWANAddr is the address other datacenters' agents join via JoinWAN.
func (a *Agent) SerfWANAddr() string { return loopback(a.ports.serfWAN) }

// SerfLANAddr is the address other agents of its datacenter join.
func (a *Agent) SerfLANAddr() string { return loopback(a.ports.serfLAN) }

// ServerAddr is the address of a server's RPC port, the form in which
// /v1/status/leader and /v1/status/peers name servers.
func (a *Agent) ServerAddr() string { return loopback(a.ports.server) }

// IsServer reports whether the agent is a server (a standalone agent always
// is; in a Cluster, the Clients are not).
func (a *Agent) IsServer() bool { return a.member == nil || a.member.server }

// NodeName is the agent's node name, e.g. for catalog queries.
func (a *Agent) NodeName() string { return a.nodeName }

// Datacenter is the agent's datacenter.
func (a *Agent) Datacenter() string { return a.cfg.Datacenter }

// LogTail returns the agent's last output lines, for diagnosing a failure.
func (a *Agent) LogTail() string { return a.log.Tail() }

// Stop shuts the agent down (SIGTERM, then SIGKILL after a grace period),
// waits for it and its output to be fully drained, and removes the temp dir
// it made. It reports an agent that had crashed on its own. Calling it again
// is a no-op.
func (a *Agent) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return nil
	}
	a.stopped = true
	err := a.halt()
	if rmErr := os.RemoveAll(a.dir); rmErr != nil && err == nil {
		err = fmt.Errorf("devconsul: remove temp dir: %w", rmErr)
	}
	return err
}

// Restart stops the agent (as Shutdown does, if it is running) and starts it
// again with the same config on the same ports, then waits until it is ready
// as Start does. With a DataDir the agent's state (KV, sessions, ACL tokens)
// survives; in -dev mode it does not.
func (a *Agent) Restart(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return errors.New("devconsul: Restart after Stop")
	}
	// A crash before the restart is not this call's failure: the restart
	// is the recovery.
	_ = a.halt()
	return a.launch(ctx)
}

// Shutdown stops the agent as Stop does, but only until Restart: nothing is
// removed. SIGTERM is a graceful shutdown; with Consul's defaults a client
// agent then leaves the cluster (its node is deregistered, which invalidates
// its sessions) while a server does not (it stays a raft peer).
func (a *Agent) Shutdown() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.checkRunning(); err != nil {
		return err
	}
	return a.halt()
}

// Kill crashes the agent with SIGKILL, as if its machine had died: it does
// not leave the cluster, so its peers find out through serf's failure
// detector. It returns once the process is gone. Restart brings it back on
// the same ports with the same data.
func (a *Agent) Kill() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.checkRunning(); err != nil {
		return err
	}
	a.proc.signaled = true
	if err := a.proc.signalGroup(syscall.SIGKILL); err != nil {
		return fmt.Errorf("devconsul: SIGKILL: %w", err)
	}
	<-a.proc.exited
	return nil
}

// checkRunning fails unless the agent's process is running. a.mu must be held.
func (a *Agent) checkRunning() error {
	if a.stopped || a.proc == nil {
		return errors.New("devconsul: agent is not running")
	}
	select {
	case <-a.proc.exited:
		return a.exitError("agent is not running")
	default:
		return nil
	}
}

// Pause freezes the whole agent with SIGSTOP: it keeps its ports open but
// answers nothing, like a hung or partitioned server. It returns once every
// thread has stopped, so a request sent afterwards is guaranteed to hang.
func (a *Agent) Pause() error { return a.signal(syscall.SIGSTOP, true) }

// Resume undoes Pause with SIGCONT, returning once the agent runs again.
func (a *Agent) Resume() error { return a.signal(syscall.SIGCONT, false) }

func (a *Agent) signal(sig syscall.Signal, wantStopped bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.checkRunning(); err != nil {
		return err
	}
	if err := a.proc.signalGroup(sig); err != nil {
		return fmt.Errorf("devconsul: %v: %w", sig, err)
	}
	// Signals are delivered asynchronously: a thread busy on another core
	// can still serve a request just after kill(2) returns.
	deadline := time.Now().Add(5 * time.Second)
	for {
		stopped, err := allThreadsStopped(a.proc.cmd.Process.Pid)
		if err != nil || stopped == wantStopped {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("devconsul: agent did not react to %v within 5s", sig)
		}
		time.Sleep(time.Millisecond)
	}
}

// allThreadsStopped reports whether every thread of pid is in the stopped
// state, according to /proc/PID/task/TID/stat.
func allThreadsStopped(pid int) (bool, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false, fmt.Errorf("devconsul: %w", err)
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread exited since ReadDir
		}
		if err != nil {
			return false, fmt.Errorf("devconsul: %w", err)
		}
		// The state follows the parenthesized command name, which may
		// itself contain spaces or parentheses: "TID (comm) S ...".
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) {
			return false, fmt.Errorf("devconsul: unexpected %s", stat)
		}
		if state := stat[i+2]; state != 'T' && state != 't' {
			return false, nil
		}
	}
	return true, nil
}

// launch starts the consul process and waits until it is ready; on failure
// it leaves nothing running. a.mu must be held.
func (a *Agent) launch(ctx context.Context) error {
	args := []string{"agent", "-config-file=" + filepath.Join(a.dir, "agent.hcl")}
	if a.cfg.DataDir == "" {
		args = append(args, "-dev")
	}
	if a.cfg.ExtraHCL != "" {
		args = append(args, "-config-file="+filepath.Join(a.dir, "extra.hcl"))
	}
	cmd := exec.Command(a.bin, args...)
	// Consul resolves some relative paths (e.g. the ACL token file in -dev
	// mode, which has no data_dir) against its working directory; keep those
	// inside our temp dir.
	cmd.Dir = a.dir
	// The same writer for both streams makes os/exec use one pipe and one
	// copying goroutine, which cmd.Wait joins.
	cmd.Stdout = a.log
	cmd.Stderr = a.log
	// Its own process group, so Stop and Pause reach anything it forks and a
	// terminal's Ctrl-C aimed at the test does not hit it first. Pdeathsig
	// covers the case where Stop never runs (the test binary is killed or
	// panics): the kernel then kills the agent instead of orphaning it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Don't let a stray inherited pipe hold Wait (and a test) hostage.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("devconsul: start %s: %w", a.bin, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	a.proc = p

	if err := a.waitReady(ctx); err != nil {
		_ = a.halt()
		return err
	}
	return nil
}

// halt stops the current process, if any, and waits for it. It returns an
// error only if the process had died on its own. a.mu must be held.
func (a *Agent) halt() error {
	p := a.proc
	if p == nil {
		return nil
	}
	select {
	case <-p.exited:
		// Reap anything it may have left in its group.
		_ = p.signalGroup(syscall.SIGKILL)
		if !p.signaled {
			return a.exitError("agent had exited on its own")
		}
		return nil
	default:
	}
	p.signaled = true
	// SIGTERM is a clean shutdown for a server (it does not leave the
	// cluster, so a restarted single server finds its Raft state intact).
	// SIGCONT after it, because a Paused agent cannot act on SIGTERM.
	_ = p.signalGroup(syscall.SIGTERM)
	_ = p.signalGroup(syscall.SIGCONT)
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
	}
	_ = p.signalGroup(syscall.SIGKILL)
	<-p.exited
	return nil
}

func (p *process) signalGroup(sig syscall.Signal) error {
	err := syscall.Kill(-p.cmd.Process.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

func (a *Agent) exitError(what string) error {
	return fmt.Errorf("devconsul: %s: %v\n--- consul output (last lines) ---\n%s", what, a.proc.waitErr, a.log.Tail())
}

// waitReady polls until the agent is usable, the process dies, or the
// deadline passes. a.mu must be held.
func (a *Agent) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = a.readyOnce(ctx); last == nil {
			return nil
		}
		select {
		case <-a.proc.exited:
			return a.exitError("consul agent exited before becoming ready")
		case <-ctx.Done():
			return fmt.Errorf("devconsul: consul agent at %s not ready: %w (last check: %v)\n--- consul output (last lines) ---\n%s",
				a.URL(), ctx.Err(), last, a.log.Tail())
		case <-tick.C:
		}
	}
}

// readyOnce checks, in the order they come true, the things a client of the
// agent relies on.
func (a *Agent) readyOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()

	var leader string
	if err := a.call(ctx, http.MethodGet, "/v1/status/leader", nil, &leader); err != nil {
		return err
	}
	if leader == "" {
		return errors.New("no raft leader yet")
	}

	// A session can only be created once the agent has synced its own node
	// into the catalog and the node's serfHealth check passes, which is
	// after the leader is known. Creating one is the honest test.
	var created struct{ ID string }
	body := map[string]any{"Name": "devconsul-readiness", "TTL": "10s", "Behavior": "delete"}
	if err := a.call(ctx, http.MethodPut, "/v1/session/create", body, &created); err != nil {
		return err
	}
	if err := a.call(ctx, http.MethodPut, "/v1/session/destroy/"+created.ID, nil, nil); err != nil {
		return err
	}

	if len(a.cfg.JoinWAN) > 0 {
		var dcs []string
		if err := a.call(ctx, http.MethodGet, "/v1/catalog/datacenters", nil, &dcs); err != nil {
			return err
		}
		if len(dcs) < 2 {
			return fmt.Errorf("WAN join pending: datacenters %v", dcs)
		}
	}
	return nil
}

// call does one HTTP request with the management token (if any), sending in
// as JSON and decoding a 200 response into out (if non-nil).
func (a *Agent) call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	status, data, err := a.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return statusError(method, path, status, data)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// send does one HTTP request with the management token (if any) and body
// (if non-nil), and returns the status code and the whole response body.
// path must be escaped already.
func (a *Agent) send(ctx context.Context, method, path string, body []byte) (status int, data []byte, err error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.URL()+path, r)
	if err != nil {
		return 0, nil, err
	}
	if a.ManagementToken != "" {
		req.Header.Set("X-Consul-Token", a.ManagementToken)
	}
	if len(body) > largeBody {
		// Consul refuses a body over its limits from the Content-Length,
		// before reading it; without waiting for its answer the client
		// could be writing into a closed connection instead of reading 413.
		req.Header.Set("Expect", "100-continue")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err = io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// largeBody is the size from which a request waits for Consul's go-ahead.
const largeBody = 64 << 10

// statusError describes a response that was not 200 OK.
func statusError(method, path string, status int, data []byte) error {
	return fmt.Errorf("%s %s: %d %s: %s", method, path, status, http.StatusText(status), bytes.TrimSpace(data))
}

// writeConfig writes agent.hcl (and extra.hcl) for the current ports.
func (a *Agent) writeConfig() error {
	var b strings.Builder
	kv := func(key string, value any) {
		switch v := value.(type) {
		case string:
			fmt.Fprintf(&b, "%s = %s\n", key, strconv.Quote(v))
		default:
			fmt.Fprintf(&b, "%s = %v\n", key, v)
		}
	}
	b.WriteString("# Written by internal/devconsul.\n")
	kv("datacenter", a.cfg.Datacenter)
	kv("node_name", a.nodeName)
	// Loopback only: tests must never be reachable from, or talk to, the
	// network.
	kv("bind_addr", "127.0.0.1")
	kv("client_addr", "127.0.0.1")
	kv("advertise_addr", "127.0.0.1")
	kv("advertise_addr_wan", "127.0.0.1")
	kv("log_level", "warn")
	// No phoning home to checkpoint.hashicorp.com.
	kv("disable_update_check", true)
	// Consul's default minimum is 10s; leader-election tests need short TTLs.
	kv("session_ttl_min", "1s")
	b.WriteString("performance {\n  raft_multiplier = 1\n}\n")
	// DNS and gRPC would default to fixed ports (8600, 8502, 8503) that two
	// agents on one machine cannot share, and nothing here uses them.
	fmt.Fprintf(&b, "ports {\n  http = %d\n  https = -1\n  dns = -1\n  grpc = -1\n  grpc_tls = -1\n  serf_lan = %d\n  serf_wan = %d\n  server = %d\n}\n",
		a.ports.http, a.ports.serfLAN, a.ports.serfWAN, a.ports.server)
	if a.cfg.DataDir != "" {
		abs, err := filepath.Abs(a.cfg.DataDir)
		if err != nil {
			return fmt.Errorf("devconsul: data dir: %w", err)
		}
		kv("data_dir", abs)
		switch m := a.member; {
		case m == nil:
			kv("server", true)
			kv("bootstrap_expect", 1)
		case m.server:
			kv("server", true)
			kv("bootstrap_expect", m.bootstrapExpect)
		default:
			kv("server", false)
		}
	}
	if m := a.member; m != nil {
		// A key of its own keeps the cluster's gossip apart from any other
		// agent on the machine: a retry_join address that has since been
		// taken by another cluster's agent (ports are reused) cannot merge
		// the two.
		kv("encrypt", m.gossipKey)
		// Consul's default retry_interval of 30s would stall a cluster
		// whose first join attempt came before the others were listening.
		fmt.Fprintf(&b, "retry_join = [%s]\n", quoteAll(m.join))
		kv("retry_interval", "1s")
	}
	if len(a.cfg.JoinWAN) > 0 {
		fmt.Fprintf(&b, "retry_join_wan = [%s]\n", quoteAll(a.cfg.JoinWAN))
	}
	if a.cfg.ACLDefaultDeny {
		// initial_management creates the management token when the first
		// leader is elected, so no /v1/acl/bootstrap round trip is needed.
		// The same token as the agent token lets the agent register its own
		// node under default-deny; without it sessions cannot be created.
		fmt.Fprintf(&b, "acl {\n  enabled = true\n  default_policy = \"deny\"\n  enable_token_persistence = true\n  tokens {\n    initial_management = %s\n    agent = %s\n  }\n}\n",
			strconv.Quote(a.ManagementToken), strconv.Quote(a.ManagementToken))
	}
	if err := os.WriteFile(filepath.Join(a.dir, "agent.hcl"), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("devconsul: write config: %w", err)
	}
	if a.cfg.ExtraHCL != "" {
		if err := os.WriteFile(filepath.Join(a.dir, "extra.hcl"), []byte(a.cfg.ExtraHCL), 0o600); err != nil {
			return fmt.Errorf("devconsul: write config: %w", err)
		}
	}
	return nil
}

// quoteAll renders addrs as the elements of an HCL list.
func quoteAll(addrs []string) string {
	quoted := make([]string, len(addrs))
	for i, addr := range addrs {
		quoted[i] = strconv.Quote(addr)
	}
	return strings.Join(quoted, ", ")
}

func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

// randomUUID returns a random (version 4) UUID, the format Consul requires
// for ACL secret IDs.
func randomUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
