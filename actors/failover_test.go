package actors_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
)

// deadBackend stands for a process that was killed: once dead, no request of
// the candidate reaches Consul (each waits for its context), so neither the
// session nor the fast-failover check is refreshed and nothing is released.
type deadBackend struct {
	*consul.Client
	dead    atomic.Bool
	revived chan struct{} // closed at the end of the test, so a stop can finish
}

// startOnDeadBackend starts a candidate with opts whose requests go through
// a deadBackend over client, which the test can make dead.
func startOnDeadBackend(t *testing.T, opts actors.Options, client *consul.Client) (*candidate, *deadBackend) {
	t.Helper()
	dead := &deadBackend{Client: client, revived: make(chan struct{})}
	opts.Backend = dead
	c := startCandidate(t, opts)
	t.Cleanup(func() { close(dead.revived) }) // runs before the candidate's stop
	return c, dead
}

func (d *deadBackend) gate(ctx context.Context) error {
	if d.dead.Load() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.revived:
			return errors.New("the process is gone")
		}
	}
	return nil
}

func (d *deadBackend) RenewSession(ctx context.Context, id string) error {
	if err := d.gate(ctx); err != nil {
		return err
	}
	return d.Client.RenewSession(ctx, id)
}

func (d *deadBackend) UpdateCheck(ctx context.Context, id, status, output string) error {
	if err := d.gate(ctx); err != nil {
		return err
	}
	return d.Client.UpdateCheck(ctx, id, status, output)
}

func (d *deadBackend) ListPrefix(ctx context.Context, prefix string, index uint64, wait time.Duration) ([]consul.Entry, uint64, error) {
	if err := d.gate(ctx); err != nil {
		return nil, index, err
	}
	return d.Client.ListPrefix(ctx, prefix, index, wait)
}

func (d *deadBackend) Relist(ctx context.Context, prefix string, index uint64, wait time.Duration, last []consul.Entry) ([]consul.Entry, uint64, error) {
	if err := d.gate(ctx); err != nil {
		return nil, index, err
	}
	return d.Client.Relist(ctx, prefix, index, wait, last)
}

func (d *deadBackend) Release(ctx context.Context, key, session string, value []byte) error {
	if err := d.gate(ctx); err != nil {
		return err
	}
	return d.Client.Release(ctx, key, session, value)
}

func (d *deadBackend) DestroySession(ctx context.Context, id string) error {
	if err := d.gate(ctx); err != nil {
		return err
	}
	return d.Client.DestroySession(ctx, id)
}

func (d *deadBackend) DeregisterService(ctx context.Context, id string) error {
	if err := d.gate(ctx); err != nil {
		return err
	}
	return d.Client.DeregisterService(ctx, id)
}

func TestFastFailoverReplacesAKilledLeaderWithinTheCheckTTL(t *testing.T) {
	client := consulClient(t, shared)
	opts := fastOptions(t, shared, "doomed")
	opts.SessionTTL = 60 * time.Second // Consul would reap it after ~120s
	opts.FastFailover, opts.FastFailoverTTL = true, 2*time.Second
	leader, doomed := startOnDeadBackend(t, opts, client)
	leader.campaign(resource)
	won := await[messages.LeadershipAcquired](leader, 15*time.Second, nil)

	info, err := client.SessionInfo(ctxFor(t), won.Session)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("session %s bound to node checks and the candidate's check; lock-delay %s", info.ID, info.LockDelay)

	opts.CandidateID, opts.Backend = "standby", nil
	standby := startCandidate(t, opts)
	standby.campaign(resource)
	await[messages.LeaderChanged](standby, 15*time.Second, func(e messages.LeaderChanged) bool { return e.LeaderID == "doomed" })

	killed := time.Now()
	doomed.dead.Store(true)
	// The dead leader still fences itself: its check can no longer be fed.
	lost := await[messages.LeadershipLost](leader, 5*time.Second, nil)
	if lost.Reason != messages.ReasonRenewDeadline || !lost.At.Before(killed.Add(opts.FastFailoverTTL)) {
		t.Fatalf("the dead leader lost %q at +%s; want renew deadline before the check TTL", lost.Reason, lost.At.Sub(killed))
	}
	await[messages.LeadershipAcquired](standby, 15*time.Second, nil) // far below the 60s session TTL
	t.Logf("standby leads %s after the leader died (check TTL %s, session TTL %s)", time.Since(killed).Round(time.Millisecond),
		opts.FastFailoverTTL, opts.SessionTTL)
}

// A supervisor starts a killed candidate again at once, with the same id: the
// new process registers the same check, and must not keep the dead one's
// session (and its lock) alive by feeding it.
func TestFastFailoverLeaderRestartedAtOnceDoesNotKeepItsOldSessionAlive(t *testing.T) {
	client := consulClient(t, shared)
	opts := fastOptions(t, shared, "reborn")
	opts.SessionTTL = 60 * time.Second // Consul would reap it after ~120s
	opts.FastFailover, opts.FastFailoverTTL = true, 2*time.Second
	leader, doomed := startOnDeadBackend(t, opts, client)
	leader.campaign(resource)
	won := await[messages.LeadershipAcquired](leader, 15*time.Second, nil)

	standbyOpts := opts
	standbyOpts.CandidateID, standbyOpts.Backend = "standby", nil
	standby := startCandidate(t, standbyOpts)
	standby.campaign(resource)
	await[messages.LeaderChanged](standby, 15*time.Second, func(e messages.LeaderChanged) bool { return e.LeaderID == "reborn" })

	killed := time.Now()
	doomed.dead.Store(true)
	opts.Backend = nil
	reborn := startCandidate(t, opts) // the same id, at once
	reborn.campaign(resource)
	next := await[messages.LeaderChanged](standby, 15*time.Second, func(e messages.LeaderChanged) bool {
		return e.LeaderID != "" && e.Session != won.Session
	})
	t.Logf("%s leads %s after the leader died and was started again (check TTL %s, session TTL %s)", next.LeaderID,
		time.Since(killed).Round(time.Millisecond), opts.FastFailoverTTL, opts.SessionTTL)
	if _, err := client.SessionInfo(ctxFor(t), won.Session); !errors.Is(err, consul.ErrSessionGone) {
		t.Errorf("the dead leader's session: %v; want it gone", err)
	}
}

// A fast-failover candidate whose session is gone makes another: the check,
// failed and registered anew for it, must pass on the servers before the
// session is asked for.
func TestFastFailoverCandidateLeadsAgainWithANewSession(t *testing.T) {
	client := consulClient(t, shared)
	opts := fastOptions(t, shared, "again")
	opts.FastFailover, opts.FastFailoverTTL = true, 2*time.Second
	c := startCandidate(t, opts)
	c.campaign(resource)
	won := await[messages.LeadershipAcquired](c, 15*time.Second, nil)
	for range 3 {
		if err := client.DestroySession(ctxFor(t), won.Session); err != nil {
			t.Fatal(err)
		}
		destroyed := time.Now()
		await[messages.LeadershipLost](c, 5*time.Second, nil)
		next := await[messages.LeadershipAcquired](c, 5*time.Second, nil)
		if next.Session == won.Session {
			t.Fatalf("led again with the destroyed session %s", won.Session)
		}
		t.Logf("leads again with a new session %s after the old one was destroyed", time.Since(destroyed).Round(time.Millisecond))
		won = next
	}
}

// A fast-failover candidate cut off from its agent for longer than its
// check's TTL loses the check and the session; once the agent answers again
// it must pass the check again (registering an existing check keeps its
// status) and lead again. Its key watcher's query, sent during the cut,
// hangs meanwhile (as on a connection that leads nowhere), blind to the
// release of the key: the new session must not wait for it.
func TestFastFailoverCandidateCutOffPastItsCheckTTLLeadsAgain(t *testing.T) {
	client := consulClient(t, shared)
	opts := fastOptions(t, shared, "cutoff")
	opts.FastFailover, opts.FastFailoverTTL = true, 2*time.Second
	c, cut := startOnDeadBackend(t, opts, client)
	c.campaign(resource)
	await[messages.LeadershipAcquired](c, 15*time.Second, nil)
	cut.dead.Store(true)
	// A change in the prefix answers the watcher's query, sent before the
	// cut; the next one is sent into it.
	other, err := client.CreateSession(ctxFor(t), consul.SessionSpec{Name: t.Name(), TTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Acquire(ctxFor(t), opts.KeyPrefix+"/"+resource+"-nudge", other, nil); err != nil {
		t.Fatal(err)
	}
	await[messages.LeadershipLost](c, 5*time.Second, nil)
	time.Sleep(2 * opts.FastFailoverTTL) // the check is critical, the session gone
	cut.dead.Store(false)
	healed := time.Now()
	// A session create sent during the cut hangs until its timeout (10 s),
	// then the next waits out its backoff (up to 5 s): usually it leads again
	// ~6 s after the heal, but it may take past 15 s.
	await[messages.LeadershipAcquired](c, 30*time.Second, nil)
	t.Logf("leads again %s after the cut healed", time.Since(healed).Round(time.Millisecond))
}

// The candidate registry's watcher likewise: a candidate that left while
// this one was cut off from its agent no longer counts once it has a new
// session.
func TestCandidateCutOffSeesWhoLeftMeanwhile(t *testing.T) {
	client := consulClient(t, shared)
	opts := fastOptions(t, shared, "cutoff")
	c, cut := startOnDeadBackend(t, opts, client)
	c.campaign(resource)
	await[messages.LeadershipAcquired](c, 15*time.Second, nil)
	peerOpts := opts
	peerOpts.CandidateID = "peer"
	peer := startCandidate(t, peerOpts)
	peer.campaign(resource)
	listed := func(resource string) bool {
		return slices.ContainsFunc(c.state(resource).Candidates, func(m messages.Candidate) bool { return m.ID == "peer" })
	}
	until(t, 10*time.Second, "the peer listed", []*candidate{c}, func() bool { return listed(resource) })
	cut.dead.Store(true)
	// The peer's next campaign answers the registry query sent before the
	// cut; the next one is sent into it, and the peer's departure goes
	// unseen.
	peer.campaign("other")
	until(t, 10*time.Second, "the peer's second campaign listed", []*candidate{c}, func() bool { return listed("other") })
	peer.stop()
	await[messages.LeadershipLost](c, 10*time.Second, nil)
	cut.dead.Store(false)
	await[messages.LeadershipAcquired](c, 30*time.Second, nil)
	until(t, 10*time.Second, "the peer gone from the candidates", []*candidate{c}, func() bool { return !listed(resource) })
}

func TestFastFailoverCheckIsDeregisteredOnStop(t *testing.T) {
	opts := fastOptions(t, shared, "tidy")
	opts.FastFailover = true
	c := startCandidate(t, opts)
	c.campaign(resource)
	won := await[messages.LeadershipAcquired](c, 15*time.Second, nil)
	client := consulClient(t, shared)
	agentInfo, err := client.Agent(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	check, _, err := client.NodeCheck(ctxFor(t), agentInfo.Node, "consul-elect-tidy-alive", 0, 0)
	if err != nil || check.ServiceID != "consul-elect-tidy" || check.Status != "passing" {
		t.Fatalf("fast-failover check %+v, %v; want a passing check of service consul-elect-tidy", check, err)
	}
	c.stop()
	if _, err := client.SessionInfo(ctxFor(t), won.Session); !errors.Is(err, consul.ErrSessionGone) {
		t.Fatalf("session after stop: %v", err)
	}
	if _, _, err := client.NodeCheck(ctxFor(t), agentInfo.Node, "consul-elect-tidy-alive", 0, 0); err == nil ||
		!strings.Contains(err.Error(), "not registered") {
		t.Fatalf("the check survived Stop: %v", err)
	}
}

func TestFastFailoverNeedsAFailoverBackend(t *testing.T) {
	opts := actors.DefaultOptions()
	opts.FastFailover = true
	opts.Backend = struct{ actors.Backend }{}
	if _, err := actors.NewProps(opts); err == nil || !strings.Contains(err.Error(), "FastFailover") {
		t.Fatalf("NewProps = %v; want an error naming FastFailover", err)
	}
}

func (d *deadBackend) Agent(ctx context.Context) (consul.AgentInfo, error) {
	if err := d.gate(ctx); err != nil {
		return consul.AgentInfo{}, err
	}
	return d.Client.Agent(ctx)
}

func (d *deadBackend) CreateSession(ctx context.Context, spec consul.SessionSpec) (string, error) {
	if err := d.gate(ctx); err != nil {
		return "", err
	}
	return d.Client.CreateSession(ctx, spec)
}

func (d *deadBackend) RegisterService(ctx context.Context, svc consul.Service) error {
	if err := d.gate(ctx); err != nil {
		return err
	}
	return d.Client.RegisterService(ctx, svc)
}

func (d *deadBackend) Acquire(ctx context.Context, key, session string, value []byte) (consul.Entry, error) {
	if err := d.gate(ctx); err != nil {
		return consul.Entry{}, err
	}
	return d.Client.Acquire(ctx, key, session, value)
}

func (d *deadBackend) SessionInfo(ctx context.Context, id string) (consul.SessionInfo, error) {
	if err := d.gate(ctx); err != nil {
		return consul.SessionInfo{}, err
	}
	return d.Client.SessionInfo(ctx, id)
}
