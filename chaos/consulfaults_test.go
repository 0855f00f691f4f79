//go:build linux

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/excalibur/consul-elect/internal/devconsul"
)

// startDatacenter starts the run's Consul for cfg.servers > 0: that many
// servers (one raft group) and a client agent, which the candidates talk
// to, as applications talk to the agent on their own machine.
func (c *cluster) startDatacenter() {
	c.consul = devconsul.ClusterForTest(c.t, devconsul.ClusterConfig{Servers: c.cfg.servers, Clients: 1})
	c.agent = c.consul.Clients[0]
}

// injectConsulFault applies a fault of Consul itself (see consulfaults.go)
// and returns once it is undone.
func (c *cluster) injectConsulFault(p planned, f *Fault, l leader) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	switch p.kind {
	case SnapshotRestore:
		return c.restoreSnapshot(ctx, p, f, l)
	case RaftLeaderKill, ServerCut:
		if err := c.injectServerFault(ctx, p, f); err != nil {
			return fmt.Errorf("%w%s", err, c.serverLogs())
		}
	}
	return nil
}

// injectServerFault applies a fault to one of the datacenter's servers.
func (c *cluster) injectServerFault(ctx context.Context, p planned, f *Fault) error {
	if c.consul == nil {
		return fmt.Errorf("%s needs a cluster of servers", p.kind)
	}
	if err := c.waitServersHealthy(ctx); err != nil {
		return err
	}
	switch p.kind {
	case RaftLeaderKill:
		raftLeader, err := c.consul.WaitForLeader(ctx, nil)
		if err != nil {
			return err
		}
		f.At = time.Now()
		if err := raftLeader.Kill(); err != nil {
			return err
		}
		next, err := c.consul.WaitForLeader(ctx, raftLeader)
		if err != nil {
			return err
		}
		elected := time.Now()
		if err := raftLeader.Restart(ctx); err != nil {
			return err
		}
		f.Healed = time.Now()
		// The leader's renewals wait for the new raft leader.
		f.Extra = elected.Sub(f.At)
		f.Params = fmt.Sprintf("%s killed, %s elected after %s, back after %s", serverName(raftLeader), serverName(next),
			f.Extra.Round(time.Millisecond), f.Healed.Sub(f.At).Round(time.Millisecond))

	case ServerCut:
		raftLeader, err := c.consul.WaitForLeader(ctx, nil)
		if err != nil {
			return err
		}
		// The raft leader as often as not, else one of the followers.
		target, role := raftLeader, "raft leader"
		if p.mode == Blackhole {
			var followers []*devconsul.Agent
			for _, s := range c.consul.Servers {
				if s != raftLeader {
					followers = append(followers, s)
				}
			}
			target, role = followers[p.pick%len(followers)], "raft follower"
		}
		f.At = time.Now()
		if err := target.Pause(); err != nil {
			return err
		}
		time.Sleep(p.hold)
		if err := target.Resume(); err != nil {
			return err
		}
		f.Healed = time.Now()
		// Requests the client agent sent to the server hang until it is
		// back.
		f.Extra = p.hold
		f.Params = fmt.Sprintf("%s %s for %s", role, serverName(target), p.hold.Round(time.Millisecond))
	}
	return nil
}

// restoreSnapshot takes a snapshot while l leads, lets it hand over (a
// switchover, or its session destroyed, as often as not: each is a fault of
// its own in the record), then restores the snapshot under the next leader,
// whose term the fault is then about: the restored key is held by l's
// session.
func (c *cluster) restoreSnapshot(ctx context.Context, p planned, f *Fault, l leader) error {
	snapshot, err := c.agent.Snapshot(ctx)
	if err != nil {
		return err
	}
	handover := planned{kind: Switchover}
	if p.mode == Blackhole {
		handover.kind = DestroySession
	}
	h, err := c.inject(f.Seq, handover, l)
	c.faults = append(c.faults, h)
	if err != nil {
		return fmt.Errorf("handing over before the restore: %w", err)
	}
	// After a switchover the old leader leaves the key to the others for
	// 2s (the engine's handover hold-back). The restore comes later, when it
	// campaigns as any follower does: then only the engine's care after a
	// restore keeps it from taking back at once the key the restore gives
	// its session, while the leader it replaces still stops its command.
	time.Sleep(time.Until(h.At.Add(restoreAfterHandover)))
	next, err := c.waitSteady(c.cfg.bounds.Failover()+recoverySlack, "leader after the handover", func(n leader) bool { return n.token > l.token })
	if err != nil {
		return fmt.Errorf("before the restore: %w", err)
	}
	f.Target, f.Token = next.id, next.token
	f.At = time.Now()
	if err := c.agent.Restore(ctx, snapshot); err != nil {
		return err
	}
	f.Healed = time.Now()
	f.Params = fmt.Sprintf("to %s/%d's term, after %s", l.id, l.token, handover.kind)
	return nil
}

// waitServersHealthy waits until every server is a healthy voter, as
// Consul's autopilot sees it, so that the datacenter survives losing one.
// After a server was cut off for longer than serf's failure detection,
// autopilot removes it from the raft configuration, and when it comes back
// adds it as a non-voter until it has been stable for 10s
// (server_stabilization_time): killing the raft leader meanwhile would
// leave one voter of two, no quorum, until the killed server is back.
func (c *cluster) waitServersHealthy(ctx context.Context) error {
	var why string
	for {
		health, err := c.autopilotHealth()
		switch {
		case err != nil:
			why = err.Error()
		case !health.Healthy || health.FailureTolerance < 1:
			why = fmt.Sprintf("autopilot: healthy %v, failure tolerance %d, servers %+v", health.Healthy, health.FailureTolerance, health.Servers)
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the servers are not healthy voters: %s", why)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

type autopilotHealth struct {
	Healthy          bool
	FailureTolerance int
	Servers          []struct {
		Name           string
		Healthy, Voter bool
	}
}

// autopilotHealth reads GET /v1/operator/autopilot/health through the
// candidates' agent.
func (c *cluster) autopilotHealth() (autopilotHealth, error) {
	var h autopilotHealth
	resp, err := c.http.Get(c.agent.URL() + "/v1/operator/autopilot/health")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	// 429 means unhealthy, with the same body.
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusTooManyRequests {
		return h, fmt.Errorf("GET /v1/operator/autopilot/health: %s", resp.Status)
	}
	return h, json.NewDecoder(resp.Body).Decode(&h)
}

// serverLogs is the last lines of every server's log, for an error.
func (c *cluster) serverLogs() string {
	var b strings.Builder
	for _, s := range c.consul.Servers {
		fmt.Fprintf(&b, "\n--- %s:\n%s", serverName(s), s.LogTail())
	}
	return b.String()
}

// restoreAfterHandover is how long after the handover a snapshot is
// restored: past the old leader's hold-back after a switchover.
const restoreAfterHandover = 2500 * time.Millisecond

// serverName is a server's node name without the cluster's random prefix.
func serverName(a *devconsul.Agent) string {
	name := a.NodeName()
	return name[strings.LastIndex(name, "-server-")+1:]
}
