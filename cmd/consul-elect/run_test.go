//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/internal/devconsul"
)

// startedBy returns the start records of candidate id.
func startedBy(t *testing.T, dir, id string) []record {
	var out []record
	for _, r := range events(t, dir, "start") {
		if r.ID == id {
			out = append(out, r)
		}
	}
	return out
}

// firstLeader waits for the first command to start and returns its record.
func firstLeader(t *testing.T, dir string) record {
	t.Helper()
	waitFor(t, 30*time.Second, "a leader's command to start", func() bool { return len(events(t, dir, "start")) > 0 })
	return events(t, dir, "start")[0]
}

func token(t *testing.T, r record) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(r.FencingToken, 10, 64)
	if err != nil || n == 0 {
		t.Fatalf("CONSUL_ELECT_FENCING_TOKEN %q is not a positive integer", r.FencingToken)
	}
	return n
}

func TestKillingTheLeaderKillsItsCommandAndTheStandbyTakesOver(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	dir := t.TempDir()
	candidates := map[string]*proc{
		"a": runCandidate(t, agent, dir, "a"),
		"b": runCandidate(t, agent, dir, "b"),
	}

	first := firstLeader(t, dir)
	if first.Resource != "r" || first.Key != "excalibur/leader-election/r" || first.Session == "" {
		t.Fatalf("the command's environment: %+v", first)
	}
	firstToken := token(t, first)
	// The standby campaigns all along, yet runs nothing.
	time.Sleep(2 * time.Second)
	if starts := events(t, dir, "start"); len(starts) != 1 {
		t.Fatalf("%d commands started, want only the leader's: %+v", len(starts), starts)
	}

	candidates[first.ID].signal(syscall.SIGKILL)
	waitFor(t, 10*time.Second, "the killed leader's command and its grandchild to die", func() bool {
		return processGone(first.PID) && processGone(first.Grandchild)
	})
	standby := map[string]string{"a": "b", "b": "a"}[first.ID]
	// The killed leader's session expires after its TTL (Consul waits up
	// to twice that), then the key stays locked for the lock-delay.
	waitFor(t, 30*time.Second, "the standby's command to start", func() bool { return len(startedBy(t, dir, standby)) > 0 })
	next := startedBy(t, dir, standby)[0]
	if next.Session == first.Session || token(t, next) <= firstToken {
		t.Fatalf("the new leader's session %s and fencing token %s, after %s and %s: want another session and a greater token",
			next.Session, next.FencingToken, first.Session, first.FencingToken)
	}
	noOverlap(t, dir)
}

func TestStopSignalsStopTheCommandAndHandOverAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		signal syscall.Signal
	}{
		{"SIGTERM", syscall.SIGTERM},
		{"SIGHUP", syscall.SIGHUP},
		{"SIGQUIT", syscall.SIGQUIT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agent := devconsul.ForTest(t, devconsul.Config{})
			dir := t.TempDir()
			// A minute's TTL and 15s of lock-delay: a standby could not take
			// over within the bound below unless the leader released the lock.
			slow := []string{"--ttl", "60s", "--lock-delay", "15s"}
			candidates := map[string]*proc{
				"a": runCandidate(t, agent, dir, "a", slow...),
				"b": runCandidate(t, agent, dir, "b", slow...),
			}
			first := firstLeader(t, dir)
			standby := map[string]string{"a": "b", "b": "a"}[first.ID]

			candidates[first.ID].signal(tc.signal)
			if code := candidates[first.ID].exitCode(15 * time.Second); code != 0 {
				t.Fatalf("consul-elect exited with %d after %s, want 0", code, tc.name)
			}
			terms := events(t, dir, "term")
			if len(terms) != 1 || terms[0].PID != first.PID {
				t.Fatalf("the leader's command should have been sent SIGTERM: %+v", terms)
			}
			if !processGone(first.Grandchild) {
				t.Fatalf("the leader's grandchild %d outlived consul-elect", first.Grandchild)
			}
			waitFor(t, 10*time.Second, "the standby's command to start", func() bool { return len(startedBy(t, dir, standby)) > 0 })
			next := startedBy(t, dir, standby)[0]
			if sessions := sessionIDs(t, agent); slices.Contains(sessions, first.Session) {
				t.Fatalf("the stopped leader's session %s still exists: %v", first.Session, sessions)
			}

			// status reports the new leader as its command knows itself.
			code, stdout, stderr := consulElect(t, "", "status", "--address", agent.URL(), "--resource", "r", "--json")
			if code != 0 {
				t.Fatalf("status: exit %d: %s", code, stderr)
			}
			state := decodeStatus(t, stdout)
			if state.LeaderID != standby || state.Session != next.Session || strconv.FormatUint(state.FencingToken, 10) != next.FencingToken {
				t.Fatalf("status says %+v; the leader's command has %+v", state, next)
			}
			noOverlap(t, dir)
		})
	}
}

func TestRunWorksWithEveryOtherFlagAtItsDefault(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flags []string
		// The info line saying what run chose, and the value it chose.
		says, field string
		value       float64 // seconds
	}{
		// The fence window 10s has room for a kill grace of 3.9s, not 5s.
		{[]string{"--ttl", "10s"}, "--kill-grace is not set", "kill_grace", 3.9},
		// The check's TTL is made long enough for the 5s kill grace.
		{[]string{"--fast-failover"}, "--fast-failover-ttl is not set", "check_ttl", 13},
	} {
		t.Run(strings.Join(tc.flags, " "), func(t *testing.T) {
			dir := t.TempDir()
			// No --id either: the command is told the engine's own default.
			p := startRun(t, agent, dir, "run", "", append([]string{"--log-format", "json"}, tc.flags...)...)
			leader := firstLeader(t, dir)
			if want := fmt.Sprintf("%s-%d", host, p.cmd.Process.Pid); leader.ID != want {
				t.Fatalf("%s is %q, want the engine's default candidate id %q", envID, leader.ID, want)
			}
			said := logLine(t, p.output.String(), tc.says)
			if said == nil || said["level"] != "info" || said[tc.field] != tc.value {
				t.Fatalf("want an info line %q with %s %v; got %v", tc.says, tc.field, tc.value, said)
			}
			p.signal(syscall.SIGTERM)
			if code := p.exitCode(15 * time.Second); code != 0 {
				t.Fatalf("consul-elect exited with %d after SIGTERM, want 0", code)
			}
		})
	}
}

// logLine returns the first JSON log line in output whose message starts
// with msg, or nil.
func logLine(t *testing.T, output, msg string) map[string]any {
	t.Helper()
	for _, line := range strings.Split(output, "\n") {
		var fields map[string]any
		if json.Unmarshal([]byte(line), &fields) == nil {
			if m, _ := fields["msg"].(string); strings.HasPrefix(m, msg) {
				return fields
			}
		}
	}
	return nil
}

func TestRunTimeoutGivesUpWithoutStartingTheCommand(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	dir := t.TempDir()
	runCandidate(t, agent, dir, "a")
	first := firstLeader(t, dir)

	b := runCandidate(t, agent, dir, "b", "--timeout", "1s")
	if code := b.exitCode(30 * time.Second); code != exitRuntime {
		t.Fatalf("consul-elect exited with %d, want %d", code, exitRuntime)
	}
	output := strings.Split(strings.TrimSpace(b.output.String()), "\n")
	if last := output[len(output)-1]; last != "consul-elect run: did not become leader of r within 1s" {
		t.Fatalf("the last line is %q; want one saying it did not become leader within 1s", last)
	}
	if started := startedBy(t, dir, "b"); len(started) > 0 {
		t.Fatalf("b's command started: %+v", started)
	}
	// b's session is gone; a's is all there is.
	if sessions := sessionIDs(t, agent); !slices.Equal(sessions, []string{first.Session}) {
		t.Fatalf("sessions %v; want only the leader's %s", sessions, first.Session)
	}
}

// sessionIDs lists the agent's sessions.
func sessionIDs(t *testing.T, agent *devconsul.Agent) []string {
	t.Helper()
	var sessions []struct{ ID string }
	if err := json.Unmarshal([]byte(get(t, agent.URL()+"/v1/session/list")), &sessions); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(sessions))
	for i, s := range sessions {
		ids[i] = s.ID
	}
	return ids
}

func TestTheCommandsExitEndsRunWithItsCodeAndReleases(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	dir := t.TempDir()
	self := runCandidateEnv(t, agent, dir, "a", exitEnv+"=7")
	if code := self.exitCode(30 * time.Second); code != 7 {
		t.Fatalf("consul-elect exited with %d, want the command's 7", code)
	}
	started := events(t, dir, "start")
	if len(started) != 1 {
		t.Fatalf("records: %+v", readRecords(t, dir))
	}
	if !processGone(started[0].Grandchild) {
		t.Fatalf("the command's grandchild %d outlived consul-elect", started[0].Grandchild)
	}
	code, stdout, _ := consulElect(t, "", "status", "--address", agent.URL(), "--resource", "r", "--json")
	var state leaderState
	if err := json.Unmarshal([]byte(stdout), &state); code != 0 || err != nil || state.LeaderID != "" || state.Session != "" {
		t.Fatalf("after the command exited, status says (exit %d) %s; want nobody leading", code, stdout)
	}
}

func TestAFrozenLeaderKillsItsCommandAtOnceWhenItWakes(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	dir := t.TempDir()
	leader := runCandidate(t, agent, dir, "a")
	first := firstLeader(t, dir)

	// Frozen long enough for Consul to expire its session (twice the TTL
	// after the last renewal), consul-elect wakes up past the moment its
	// command had to be gone by: no SIGTERM and grace, SIGKILL at once.
	leader.signal(syscall.SIGSTOP)
	time.Sleep(9 * time.Second)
	leader.signal(syscall.SIGCONT)
	waitFor(t, 10*time.Second, "the command to be killed", func() bool { return processGone(first.PID) && processGone(first.Grandchild) })
	if terms := events(t, dir, "term"); len(terms) > 0 {
		t.Fatalf("the command was sent SIGTERM after its deadline: %+v", terms)
	}
	// And it campaigns again.
	waitFor(t, 30*time.Second, "a new term's command", func() bool { return len(events(t, dir, "start")) > 1 })
	noOverlap(t, dir)
}

func TestFastFailoverReplacesAKilledLeaderLongBeforeItsSessionTTL(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	dir := t.TempDir()
	// A 60s session TTL: without fast failover Consul would take 60–120s.
	flags := []string{"--ttl", "60s", "--fast-failover"}
	candidates := map[string]*proc{
		"a": runCandidate(t, agent, dir, "a", flags...),
		"b": runCandidate(t, agent, dir, "b", flags...),
	}
	first := firstLeader(t, dir)
	time.Sleep(time.Second) // the standby is campaigning
	candidates[first.ID].signal(syscall.SIGKILL)
	killed := time.Now()
	standby := map[string]string{"a": "b", "b": "a"}[first.ID]
	waitFor(t, 20*time.Second, "the standby's command to start", func() bool { return len(startedBy(t, dir, standby)) > 0 })
	t.Logf("the standby leads %s after the leader was killed (check TTL 2s, lock-delay 1s, session TTL 60s)",
		time.Since(killed).Round(100*time.Millisecond))
	noOverlap(t, dir)
}
