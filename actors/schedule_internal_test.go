package actors

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/consul"
)

var (
	noClusterLeader = &consul.Error{Op: "renew session", Err: errors.New("Unexpected response code: 500 (No cluster leader)")}
	denied          = &consul.Error{Op: "renew session", Kind: consul.ErrPermissionDenied, Err: errors.New("Permission denied")}
)

// outcome is what becomes of an attempt.
type outcome int

const (
	succeeds outcome = iota
	fails            // answered at once with the error
	hangs            // never answered: abandoned
)

// answerTime is how long a request that is answered takes.
const answerTime = 5 * time.Millisecond

// play runs the schedule from a success sent at 0, the attempts ending as of
// says, and returns the attempts' send times (from 0) and whether one
// succeeded, answered before the step-down point.
func (p refreshSchedule) play(of func(sentAt time.Duration) outcome, err error) (sent []time.Duration, ok bool) {
	last := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	stepDown := last.Add(p.stepDownAfter)
	at := p.next(last)
	for at.Before(stepDown) {
		sent = append(sent, at.Sub(last))
		answered := at.Add(answerTime)
		result := of(at.Sub(last))
		if abandon := p.abandonAt(last, at); result == hangs || answered.After(abandon) {
			answered, result = abandon, hangs
		}
		if result == succeeds {
			return sent, answered.Before(stepDown)
		}
		at = p.retryAt(last, at, err)
		if at.Before(answered) {
			at = answered // one attempt at a time
		}
	}
	return sent, false
}

func failsUntil(end time.Duration) func(time.Duration) outcome {
	return func(at time.Duration) outcome {
		if at < end {
			return fails
		}
		return succeeds
	}
}

func TestRefreshScheduleRidesOutBurstsThatEndBeforeTheLastAttempt(t *testing.T) {
	cases := []Options{
		{SessionTTL: 30 * time.Second, LockDelay: 15 * time.Second},                        // the defaults
		{SessionTTL: 10 * time.Second, LockDelay: 5 * time.Second},                         // W 5s
		{SessionTTL: 2 * time.Second},                                                      // the tests' fastOptions
		{SessionTTL: time.Hour, LockDelay: time.Minute, SelfFenceMargin: 10 * time.Second}, // RetryEvery 1s
		{SessionTTL: 10 * time.Second, LockDelay: 5 * time.Second, FastFailover: true},     // check TTL 2s
		{SessionTTL: 10 * time.Second, FastFailover: true, FastFailoverTTL: time.Second},
	}
	for _, opts := range cases {
		timing := opts.Timing()
		plans := map[string]refreshSchedule{"session": sessionSchedule(timing)}
		if opts.FastFailover {
			plans["check"] = checkSchedule(timing)
		}
		for name, p := range plans {
			t.Run(fmt.Sprintf("%s-%s-%s-%s", name, opts.SessionTTL, opts.LockDelay, p.stepDownAfter), func(t *testing.T) {
				lastChance := p.stepDownAfter - p.retry/2
				rule := p.stepDownAfter - p.every - p.retry // the documented rule
				for _, burst := range []time.Duration{p.retry / 2, rule / 2, rule, lastChance - p.every - answerTime} {
					sent, ok := p.play(failsUntil(p.every+burst), noClusterLeader)
					if !ok {
						t.Errorf("a burst of %s from the renewal at %s: no success before %s; attempts at %v", burst, p.every, p.stepDownAfter, sent)
					}
					for i := 1; i < len(sent); i++ {
						if gap := sent[i] - sent[i-1]; gap < p.retry && sent[i] != lastChance {
							t.Errorf("attempts at %s and %s: less than the retry interval %s apart", sent[i-1], sent[i], p.retry)
						}
					}
				}
				// Failing all along: the last attempt goes out retry/2 before the step-down point.
				sent, ok := p.play(failsUntil(time.Hour), noClusterLeader)
				if final := sent[len(sent)-1]; ok || final != lastChance {
					t.Errorf("failing all along: attempts at %v (ok %v); want the last at %s", sent, ok, lastChance)
				}
				// Every request hangs: each is abandoned, the last attempt is still made.
				sent, _ = p.play(func(time.Duration) outcome { return hangs }, noClusterLeader)
				if final := sent[len(sent)-1]; len(sent) < 3 || final != lastChance {
					t.Errorf("hung requests: attempts at %v; want at least 3, the last at %s", sent, lastChance)
				}
				// The renewal hangs, the agent recovers at once: the first retry succeeds.
				hangsOnce := func(at time.Duration) outcome {
					if at == p.every {
						return hangs
					}
					return succeeds
				}
				if sent, ok := p.play(hangsOnce, noClusterLeader); !ok || len(sent) != 2 || sent[1] > p.every+p.every/2 {
					t.Errorf("one hung renewal: attempts at %v (ok %v); want a retry once it is abandoned after %s", sent, ok, p.every/2)
				}
				// A denied token: no more than one attempt a second.
				sent, _ = p.play(failsUntil(time.Hour), denied)
				for i := 1; i < len(sent); i++ {
					if gap := sent[i] - sent[i-1]; gap < deniedRetryEvery {
						t.Errorf("denied: attempts at %s and %s, %s apart; want at least %s", sent[i-1], sent[i], gap, deniedRetryEvery)
					}
				}
			})
		}
	}
}
