package main

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/actors"
)

// parseRunArgs parses a run command line, the test binary as COMMAND.
func parseRunArgs(t *testing.T, flags ...string) (*runFlags, actors.Options, choices, error) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{"--resource", "r"}, flags...), "--", self)
	return parseRun(&cli{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}, args)
}

func TestEveryValidTTLWorksWithEveryOtherFlagAtItsDefault(t *testing.T) {
	// From Consul's default session_ttl_min up.
	for _, ttl := range []string{"10s", "11s", "12s", "12.5s", "15s", "20s", "30s", "45s", "1m", "10m", "24h"} {
		for _, failover := range []bool{false, true} {
			flags := []string{"--ttl", ttl}
			if failover {
				flags = append(flags, "--fast-failover")
			}
			t.Run(strings.Join(flags, " "), func(t *testing.T) {
				_, opts, chosen, err := parseRunArgs(t, flags...)
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if err := opts.Validate(); err != nil {
					t.Fatalf("the engine would refuse the options: %v", err)
				}
				timing := opts.Timing()
				want := min(defaultKillGrace, timing.MaxSelfFenceMargin)
				if opts.SelfFenceMargin != want || chosen.killGraceLowered != (want < defaultKillGrace) {
					t.Fatalf("kill grace %s (lowered: %v), want %s: the default, or the most the fence window %s allows",
						opts.SelfFenceMargin, chosen.killGraceLowered, want, timing.FenceWindow)
				}
				if failover {
					wantShortestCheckTTL(t, opts)
				}
			})
		}
	}
}

// wantShortestCheckTTL checks that the chosen fast-failover check TTL is the
// shortest whole second from 2s that the engine accepts, and not above
// SessionTTL.
func wantShortestCheckTTL(t *testing.T, opts actors.Options) {
	t.Helper()
	ttl := opts.FastFailoverTTL
	if ttl < minAutoCheckTTL || ttl > opts.SessionTTL || (ttl%time.Second != 0 && ttl != opts.SessionTTL) {
		t.Fatalf("check TTL %s: want a whole second between %s and --ttl %s", ttl, minAutoCheckTTL, opts.SessionTTL)
	}
	if ttl > minAutoCheckTTL {
		shorter := opts
		shorter.FastFailoverTTL = (ttl - 1).Truncate(time.Second)
		if shorter.Validate() == nil {
			t.Fatalf("check TTL %s chosen for kill grace %s, though %s is accepted", ttl, opts.SelfFenceMargin, shorter.FastFailoverTTL)
		}
	}
}

func TestFastFailoverFitsTheCheckTTLToTheKillGraceAndBack(t *testing.T) {
	for _, tc := range []struct {
		flags     []string
		killGrace time.Duration
		checkTTL  time.Duration
	}{
		// The default grace fits the fence window 15s; the check's TTL
		// is made long enough for it.
		{[]string{"--fast-failover"}, defaultKillGrace, 13 * time.Second},
		// A short grace: the engine's 2s.
		{[]string{"--fast-failover", "--kill-grace", "300ms"}, 300 * time.Millisecond, 2 * time.Second},
		{[]string{"--fast-failover", "--kill-grace", "1s"}, time.Second, 3 * time.Second},
		// A check TTL set: the default grace is lowered to fit it.
		{[]string{"--fast-failover", "--fast-failover-ttl", "2s"}, 700 * time.Millisecond, 2 * time.Second},
		// Both set and fitting: taken as given.
		{[]string{"--fast-failover", "--fast-failover-ttl", "5s", "--kill-grace", "1s"}, time.Second, 5 * time.Second},
		// --ttl 10s leaves room for 3.9s, and the check TTL cannot be
		// longer than --ttl.
		{[]string{"--fast-failover", "--ttl", "10s"}, 3900 * time.Millisecond, 10 * time.Second},
	} {
		t.Run(strings.Join(tc.flags, " "), func(t *testing.T) {
			f, opts, chosen, err := parseRunArgs(t, tc.flags...)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if opts.SelfFenceMargin != tc.killGrace || opts.FastFailoverTTL != tc.checkTTL {
				t.Fatalf("kill grace %s and check TTL %s, want %s and %s", opts.SelfFenceMargin, opts.FastFailoverTTL, tc.killGrace, tc.checkTTL)
			}
			if chosen.checkTTLChosen == f.set["fast-failover-ttl"] {
				t.Fatalf("check TTL chosen: %v, though --fast-failover-ttl set: %v", chosen.checkTTLChosen, f.set["fast-failover-ttl"])
			}
		})
	}
}

func TestOptionErrorsNameTheFlags(t *testing.T) {
	opts := actors.DefaultOptions()
	opts.SessionTTL, opts.SelfFenceMargin, opts.FastFailover, opts.FastFailoverTTL = 10*time.Second, 5*time.Second, true, 2*time.Second
	opts.Datacenter, opts.Token, opts.TokenFile, opts.CandidateID = "dc2", "t", "f", strings.Repeat("x", 300)
	opts.HealthCheckID, opts.KeyPrefix, opts.ConsulAddress = " c", "/p", "ftp://x"
	var all []string
	for _, err := range flagErrors(opts.Validate()) {
		all = append(all, err.Error())
	}
	text := strings.Join(all, "\n")
	for _, flag := range []string{"--ttl", "--kill-grace", "--fast-failover-ttl", "--fast-failover", "--datacenter", "--token",
		"--token-file", "--id", "--health-check", "--prefix", "--address"} {
		if !strings.Contains(text, flag+" ") && !strings.Contains(text, flag+":") && !strings.Contains(text, flag+")") {
			t.Errorf("no error names %s:\n%s", flag, text)
		}
	}
	for _, option := range []string{"SessionTTL", "LockDelay", "SelfFenceMargin", "FastFailover", "HealthCheckID", "CandidateID",
		"KeyPrefix", "Datacenter", "ConsulAddress", "Token", "DefaultOptions"} {
		if strings.Contains(text, option) {
			t.Errorf("an error still names the option %s:\n%s", option, text)
		}
	}
}
