package devconsul

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// ClusterConfig describes one datacenter of several agents.
type ClusterConfig struct {
	// Datacenter defaults to "dc1".
	Datacenter string
	// Servers is the number of server agents; 0 means 3. They wait for each
	// other (bootstrap_expect) before they elect a raft leader.
	Servers int
	// Clients is the number of client agents (server = false). Applications
	// talk to a client agent on their own machine in production, and it
	// forwards to the servers.
	Clients int
	// ExtraHCL is merged into every agent's config after the harness's own.
	ExtraHCL string
	// Log receives every agent's output, each line prefixed with the agent's
	// node name; nil discards it.
	Log io.Writer
}

// defaultServers is the smallest cluster that survives losing a server.
const defaultServers = 3

// Cluster is one datacenter of server and client agents on loopback, each
// with its own ports and data dir (so each survives Restart with its state),
// all joined over serf LAN. The servers form one raft cluster.
//
// Servers and clients run with Consul's default shutdown behaviour: on
// Shutdown (SIGTERM) a client leaves the cluster and a server does not.
type Cluster struct {
	Servers []*Agent
	Clients []*Agent
	dir     string // holds the agents' data dirs; removed by Stop
}

// StartCluster launches every agent at once and waits until each is usable:
// the servers have elected a leader and every agent's node is registered, so
// sessions can be created through any of them. On error nothing is left
// running.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	if cfg.Servers < 0 || cfg.Clients < 0 {
		return nil, fmt.Errorf("devconsul: Servers is %d and Clients is %d; neither may be negative (0 Servers means %d)",
			cfg.Servers, cfg.Clients, defaultServers)
	}
	if cfg.Servers == 0 {
		cfg.Servers = defaultServers
	}
	bin, err := Binary(ctx, os.Stderr)
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	if c.dir, err = os.MkdirTemp("", "devconsul-cluster-*"); err != nil {
		return nil, fmt.Errorf("devconsul: %w", err)
	}
	// Everyone's ports are picked up front, so that each agent's config can
	// name the servers to join.
	sets, err := freePortSets(cfg.Servers + cfg.Clients)
	if err != nil {
		_ = c.Stop()
		return nil, err
	}
	servers := make([]string, cfg.Servers)
	for i := range servers {
		servers[i] = loopback(sets[i].serfLAN)
	}
	name := "devconsul-" + randomHex(4)
	gossipKey := make([]byte, 32)
	_, _ = rand.Read(gossipKey) // crypto/rand.Read never fails on Linux
	log := &sharedLog{w: cfg.Log}
	var agents []*Agent
	for i := range sets {
		m := &member{server: i < cfg.Servers, bootstrapExpect: cfg.Servers, gossipKey: base64.StdEncoding.EncodeToString(gossipKey)}
		var nodeName string
		if m.server {
			nodeName = fmt.Sprintf("%s-server-%d", name, i+1)
			m.join = append(append([]string{}, servers[:i]...), servers[i+1:]...)
		} else {
			nodeName = fmt.Sprintf("%s-client-%d", name, i-cfg.Servers+1)
			m.join = servers
		}
		agentCfg := Config{
			Datacenter: cfg.Datacenter,
			DataDir:    filepath.Join(c.dir, nodeName),
			NodeName:   nodeName,
			ExtraHCL:   cfg.ExtraHCL,
		}
		if cfg.Log != nil {
			agentCfg.Log = log.prefixed(nodeName + " ")
		}
		a, err := newAgent(bin, agentCfg, m)
		if err != nil {
			_ = c.Stop()
			return nil, err
		}
		agents = append(agents, a)
		if m.server {
			c.Servers = append(c.Servers, a)
		} else {
			c.Clients = append(c.Clients, a)
		}
	}

	// All at once: no server becomes ready before a quorum has joined. The
	// first failure cancels the others' wait.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(agents))
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Go(func() {
			if err := a.start(ctx, &sets[i]); err != nil {
				errs[i] = fmt.Errorf("%s: %w", a.NodeName(), err)
				cancel()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// Agents returns the servers, then the clients.
func (c *Cluster) Agents() []*Agent {
	return append(append([]*Agent{}, c.Servers...), c.Clients...)
}

// Leader returns the server that is raft leader according to the servers
// that answer. It fails when fewer than a quorum answer, when they do not
// all name the same server (an election is under way) or name none, and
// when the one they name does not answer itself (it died, and the others
// have not noticed yet).
func (c *Cluster) Leader(ctx context.Context) (*Agent, error) {
	answers := map[string][]string{} // leader address → servers naming it
	answered := 0
	for _, s := range c.Servers {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		var leader string
		err := s.call(ctx, http.MethodGet, "/v1/status/leader", nil, &leader)
		cancel()
		if err != nil {
			continue // down, paused or starting
		}
		answered++
		answers[leader] = append(answers[leader], s.NodeName())
	}
	if quorum := len(c.Servers)/2 + 1; answered < quorum {
		return nil, fmt.Errorf("devconsul: %d of %d servers answer, fewer than a quorum", answered, len(c.Servers))
	}
	if len(answers) > 1 {
		return nil, fmt.Errorf("devconsul: servers disagree on the raft leader: %v", answers)
	}
	var addr string
	for a := range answers {
		addr = a // the only one
	}
	if addr == "" {
		return nil, errors.New("devconsul: no raft leader")
	}
	i := slices.IndexFunc(c.Servers, func(s *Agent) bool { return s.ServerAddr() == addr })
	if i < 0 {
		return nil, fmt.Errorf("devconsul: the raft leader %s is not a server of this cluster", addr)
	}
	leader := c.Servers[i]
	if !slices.Contains(answers[addr], leader.NodeName()) {
		return nil, fmt.Errorf("devconsul: the raft leader %s does not answer", leader.NodeName())
	}
	return leader, nil
}

// WaitForLeader waits until Leader names a server other than not (nil: any)
// and returns it, for at most a minute.
func (c *Cluster) WaitForLeader(ctx context.Context, not *Agent) (*Agent, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		leader, err := c.Leader(ctx)
		if err == nil && leader != not {
			return leader, nil
		}
		if err == nil {
			err = fmt.Errorf("%s is still the raft leader", leader.NodeName())
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("devconsul: waiting for a new raft leader: %w (last: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// Stop stops every agent (all at once, as Agent.Stop does) and removes their
// data dirs. It reports agents that had crashed on their own. Calling it
// again is a no-op.
func (c *Cluster) Stop() error {
	agents := c.Agents()
	errs := make([]error, len(agents))
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Go(func() {
			if err := a.Stop(); err != nil {
				errs[i] = fmt.Errorf("%s: %w", a.NodeName(), err)
			}
		})
	}
	wg.Wait()
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Errorf("devconsul: remove cluster dir: %w", err))
	}
	return errors.Join(errs...)
}

// sharedLog lets several agents write whole lines to one writer.
type sharedLog struct {
	mu sync.Mutex
	w  io.Writer
}

// prefixed returns a writer for one agent that puts prefix before each line.
func (l *sharedLog) prefixed(prefix string) io.Writer {
	return &prefixWriter{log: l, prefix: prefix}
}

// prefixWriter holds an unterminated last line back until it is complete.
// Its owner (one agent's logRing) never writes to it concurrently.
type prefixWriter struct {
	log     *sharedLog
	prefix  string
	partial []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	data := append(p.partial, b...)
	var out []byte
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		out = append(append(out, p.prefix...), data[:i+1]...)
		data = data[i+1:]
	}
	p.partial = append(p.partial[:0:0], data...)
	if len(out) > 0 {
		p.log.mu.Lock()
		defer p.log.mu.Unlock()
		if _, err := p.log.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
