package actors_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/internal/faultproxy"
	"github.com/excalibur/consul-elect/messages"
)

// Blips: Consul answering 500 "No cluster leader" while its servers elect a
// raft leader, or 429 when it sheds load, for a second or two. A leader
// whose requests fail like that for less than its retry window must keep
// leading; one whose requests fail past its step-down point must step down
// before anyone else can lead. The leader talks to the agent through a
// faultproxy; the standby talks to the agent directly, so that it could take
// over at any moment if the leader's key were released.

const noClusterLeader = "No cluster leader" // Consul's body for a 500 during a raft election

func isRenewal(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/session/renew/")
}

func isCheckUpdate(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/agent/check/update/")
}

// renewals records the leader's session refreshes through Options.Observer.
type renewals struct {
	mu       sync.Mutex
	ok       []time.Time // sent at, of those that succeeded (and creations)
	failures []time.Time
}

func (r *renewals) Event(messages.Event)      {}
func (r *renewals) ConsulError(string, error) {}
func (r *renewals) Refreshed(sentAt time.Time, _ time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.ok = append(r.ok, sentAt)
	} else {
		r.failures = append(r.failures, sentAt)
	}
}

// lastBefore is when the last successful refresh sent before t was sent.
func (r *renewals) lastBefore(t time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last time.Time
	for _, at := range r.ok {
		if at.Before(t) && at.After(last) {
			last = at
		}
	}
	return last
}

// firstAfter is when the first successful refresh sent after t was sent
// (zero: none).
func (r *renewals) firstAfter(t time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var first time.Time
	for _, at := range r.ok {
		if !at.Before(t) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first
}

// attemptsSince lists every refresh sent since t, relative to t.
func (r *renewals) attemptsSince(t time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, at := range r.failures {
		if !at.Before(t) {
			fmt.Fprintf(&b, " failed@+%s", at.Sub(t).Round(time.Millisecond))
		}
	}
	for _, at := range r.ok {
		if !at.Before(t) {
			fmt.Fprintf(&b, " ok@+%s", at.Sub(t).Round(time.Millisecond))
		}
	}
	return b.String()
}

// blipElection is a leader behind a fault proxy and a standby, both with
// SessionTTL 10s and LockDelay 5s (fence window W = 5s).
type blipElection struct {
	proxy           *faultproxy.Proxy
	leader, standby *candidate
	renewals        *renewals
	won             messages.LeadershipAcquired
	timing          actors.Timing
}

func startBlipElection(t *testing.T, fastFailover bool) *blipElection {
	t.Helper()
	proxy, err := faultproxy.Start(shared.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() }) // after the candidates have stopped
	e := &blipElection{proxy: proxy, renewals: &renewals{}}

	opts := fastOptions(t, shared, "leader")
	opts.ConsulAddress, opts.Observer = proxy.URL(), e.renewals
	opts.SessionTTL, opts.LockDelay = 10*time.Second, 5*time.Second
	opts.FastFailover, opts.FastFailoverTTL = fastFailover, 2*time.Second
	e.timing = opts.Timing()
	e.leader = startCandidate(t, opts)
	e.leader.campaign(resource)
	e.won = await[messages.LeadershipAcquired](e.leader, 15*time.Second, nil)

	opts.CandidateID, opts.ConsulAddress, opts.Observer = "standby", shared.URL(), nil
	e.standby = startCandidate(t, opts)
	e.standby.campaign(resource)
	await[messages.LeaderChanged](e.standby, 15*time.Second, func(c messages.LeaderChanged) bool { return c.LeaderID == "leader" })
	return e
}

// began waits for the burst to begin, within one refresh interval.
func (e *blipElection) began(t *testing.T, b *faultproxy.Burst, within time.Duration) time.Time {
	t.Helper()
	select {
	case <-b.Began():
	case <-time.After(within + 5*time.Second):
		t.Fatalf("no request began the burst within %s", within+5*time.Second)
	}
	return b.BeganAt()
}

// stillLeads checks that the leader leads with its first session and
// fencing token and that the standby never led.
func (e *blipElection) stillLeads(t *testing.T) {
	t.Helper()
	none[messages.LeadershipAcquired](e.standby, 100*time.Millisecond, nil) // drains what it heard
	if state := e.leader.state(resource); !state.IsLeader || state.FencingToken != e.won.FencingToken {
		t.Fatalf("leader: %+v; want leading with fencing token %d", state, e.won.FencingToken)
	}
	entry, ok, err := operator(t, shared).Get(ctxFor(t), e.leader.opts.KeyPrefix+"/"+resource)
	if err != nil || !ok || entry.Session != e.won.Session {
		t.Fatalf("the key is %+v (ok %v, err %v); want held by the leader's first session %s", entry, ok, err, e.won.Session)
	}
}

// handOver lets the standby lead once the leader has stepped down: the
// leader holds off campaigning, and the standby leads once the leader's
// old session is gone and its lock-delay over.
func (e *blipElection) handOver(t *testing.T, lost messages.LeadershipLost) messages.LeadershipAcquired {
	t.Helper()
	e.leader.system.Root.Send(e.leader.root, &messages.Resign{Resource: resource, HoldOff: time.Minute})
	next := await[messages.LeadershipAcquired](e.standby, 30*time.Second, nil)
	if !lost.At.Before(next.At) {
		t.Fatalf("the leader stepped down at %s, after the standby led at %s", lost.At.Format(time.StampMilli), next.At.Format(time.StampMilli))
	}
	return next
}

func TestLeaderRidesOutErrorBurstsThatEndBeforeItsLastRetry(t *testing.T) {
	e := startBlipElection(t, false)
	timing := e.timing
	// Begins with a renewal, lasts the whole retry window but one interval.
	length := timing.StepDownAfter - timing.RenewEvery - timing.RetryEvery
	for _, fault := range []faultproxy.Fault{
		{Status: http.StatusInternalServerError, Body: noClusterLeader},
		{Status: http.StatusTooManyRequests, Body: "rate limit exceeded, try again later"},
	} {
		fault.For, fault.When = length, isRenewal
		burst := e.proxy.Arm(fault)
		began := e.began(t, burst, timing.RenewEvery)
		lastOK := e.renewals.lastBefore(began)
		stepDownAt := lastOK.Add(timing.StepDownAfter)
		<-burst.Ended()
		// Past the step-down point of the renewal the burst refused, and
		// past the next regular renewal.
		none[messages.LeadershipLost](e.leader, time.Until(stepDownAt.Add(timing.RenewEvery/2)), nil)
		// Every request in the burst failed: a renewal sent since it began
		// and succeeded was sent after it ended.
		renewed := e.renewals.firstAfter(began)
		t.Logf("%d for %s from +%s after the last renewal: %d requests refused; attempts:%s", fault.Status, length,
			began.Sub(lastOK).Round(time.Millisecond), burst.Answered(), e.renewals.attemptsSince(began))
		if renewed.IsZero() || !renewed.Before(stepDownAt) {
			t.Fatalf("no renewal sent after the burst succeeded before the step-down point (+%s)", timing.StepDownAfter)
		}
		if burst.Answered() < 2 {
			t.Fatalf("the burst refused %d requests; want the renewal and its retries", burst.Answered())
		}
		e.stillLeads(t)
	}
}

func TestLeaderStepsDownWhenABurstOutlastsItsStepDownPoint(t *testing.T) {
	e := startBlipElection(t, false)
	timing := e.timing
	burst := e.proxy.Arm(faultproxy.Fault{Status: http.StatusInternalServerError, Body: noClusterLeader,
		For: timing.StepDownAfter - timing.RenewEvery + time.Second, When: isRenewal})
	began := e.began(t, burst, timing.RenewEvery)
	lastOK := e.renewals.lastBefore(began)

	lost := await[messages.LeadershipLost](e.leader, timing.StepDownAfter+5*time.Second, nil)
	t.Logf("stepped down +%s after the last renewal was sent; attempts:%s", lost.At.Sub(lastOK).Round(time.Millisecond),
		e.renewals.attemptsSince(began))
	// api's Session.Renew drops the body: "Unexpected response code: 500".
	if lost.Reason != messages.ReasonRenewDeadline || lost.Err == nil || !strings.Contains(lost.Err.Error(), "500") {
		t.Fatalf("lost %q (%v); want renew deadline with the 500", lost.Reason, lost.Err)
	}
	// Not before the step-down point, and well before the fence window ends:
	// the earliest another candidate could lead.
	const slack = time.Second
	if stepDownAt := lastOK.Add(timing.StepDownAfter); lost.At.Before(stepDownAt) || lost.At.After(stepDownAt.Add(slack)) {
		t.Fatalf("stepped down at +%s after the last renewal; want +%s (at most %s later)", lost.At.Sub(lastOK), timing.StepDownAfter, slack)
	}
	if fence := lastOK.Add(timing.FenceWindow); !lost.At.Before(fence) {
		t.Fatalf("stepped down at +%s after the last renewal, not within the fence window %s", lost.At.Sub(lastOK), timing.FenceWindow)
	}
	next := e.handOver(t, lost)
	t.Logf("the standby leads %s after the leader stepped down", next.At.Sub(lost.At).Round(time.Millisecond))
}

func TestFastFailoverLeaderRidesOutShortCheckBurstsAndStepsDownOnALongOne(t *testing.T) {
	e := startBlipElection(t, true)
	timing := e.timing

	// Begins with a check update, lasts the check's retry window but one
	// interval; every request fails meanwhile, renewals included.
	short := timing.CheckStepDownAfter - timing.CheckUpdateEvery - timing.CheckRetryEvery
	burst := e.proxy.Arm(faultproxy.Fault{Status: http.StatusInternalServerError, Body: noClusterLeader, For: short, When: isCheckUpdate})
	began := e.began(t, burst, timing.CheckUpdateEvery)
	<-burst.Ended()
	// The triggering update was sent at least CheckUpdateEvery after the
	// last good one: its step-down point is at most this.
	none[messages.LeadershipLost](e.leader, time.Until(began.Add(timing.CheckStepDownAfter)), nil)
	t.Logf("check updates refused for %s: %d requests", short, burst.Answered())
	if burst.Answered() < 2 {
		t.Fatalf("the burst refused %d requests; want the update and its retries", burst.Answered())
	}
	e.stillLeads(t)

	long := timing.CheckStepDownAfter // the check's TTL runs out meanwhile
	burst = e.proxy.Arm(faultproxy.Fault{Status: http.StatusInternalServerError, Body: noClusterLeader, For: long, When: isCheckUpdate})
	began = e.began(t, burst, timing.CheckUpdateEvery)
	lost := await[messages.LeadershipLost](e.leader, timing.CheckStepDownAfter+5*time.Second, nil)
	t.Logf("stepped down %s after the burst began", lost.At.Sub(began).Round(time.Millisecond))
	if lost.Reason != messages.ReasonRenewDeadline {
		t.Fatalf("lost %q (%v); want renew deadline", lost.Reason, lost.Err)
	}
	const slack = time.Second
	if latest := began.Add(timing.CheckStepDownAfter - timing.CheckUpdateEvery + slack); lost.At.After(latest) {
		t.Fatalf("stepped down %s after the burst began; want by %s", lost.At.Sub(began), latest.Sub(began))
	}
	next := e.handOver(t, lost)
	t.Logf("the standby leads %s after the leader stepped down", next.At.Sub(lost.At).Round(time.Millisecond))
}
