//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/internal/devconsul"
)

// stateKeys are the keys of watch --json, and with candidateKey those of
// status --json and of each object of list --json: a public contract.
var stateKeys = []string{"resource", "leader_id", "node", "session", "fencing_token", "since", "metadata"}

const candidateKey = "candidates"

// candidateKeys are the keys of each candidate in status --json and list --json.
var candidateKeys = []string{"id", "node", "priority", "healthy", "reason", "version", "started"}

// decodeState parses one line of watch --json, insisting on exactly the
// documented keys.
func decodeState(t *testing.T, line string) leaderState {
	t.Helper()
	var state leaderState
	decodeObject(t, line, stateKeys, &state)
	return state
}

// decodeStatus parses the output of status --json, insisting on exactly the
// documented keys, the candidates' included.
func decodeStatus(t *testing.T, output string) resourceState {
	t.Helper()
	var state resourceState
	decodeObject(t, output, append(slices.Clone(stateKeys), candidateKey), &state)
	return state
}

// decodeObject checks that data is one JSON object with exactly keys, the
// fencing token a number, metadata an object and candidates, if among keys,
// an array of objects with exactly candidateKeys; then decodes it into v.
func decodeObject(t *testing.T, data string, keys []string, v any) {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal([]byte(data), &raw); err != nil {
		t.Fatalf("%q is not a JSON object: %v", data, err)
	}
	checkKeys(t, data, raw, keys)
	if _, ok := raw["fencing_token"].(float64); !ok {
		t.Fatalf("%s: fencing_token is not a number", data)
	}
	if _, ok := raw["metadata"].(map[string]any); !ok {
		t.Fatalf("%s: metadata is not an object ({} when there is none)", data)
	}
	if slices.Contains(keys, candidateKey) {
		candidates, ok := raw[candidateKey].([]any)
		if !ok {
			t.Fatalf("%s: candidates is not an array ([] when there is none)", data)
		}
		for _, c := range candidates {
			object, ok := c.(map[string]any)
			if !ok {
				t.Fatalf("%s: a candidate is not an object", data)
			}
			checkKeys(t, data, object, candidateKeys)
		}
	}
	if err := json.Unmarshal([]byte(data), v); err != nil {
		t.Fatal(err)
	}
}

func checkKeys(t *testing.T, data string, raw map[string]any, keys []string) {
	t.Helper()
	for _, key := range keys {
		if _, ok := raw[key]; !ok {
			t.Fatalf("%s has no key %q", data, key)
		}
	}
	if len(raw) != len(keys) {
		t.Fatalf("%s: want exactly the keys %v", data, keys)
	}
}

// status runs status --json for r.
func status(t *testing.T, agent *devconsul.Agent) resourceState {
	t.Helper()
	code, stdout, stderr := consulElect(t, "", "status", "--address", agent.URL(), "--resource", "r", "--json")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, stderr)
	}
	return decodeStatus(t, stdout)
}

// awaitStatus polls status --json until cond holds.
func awaitStatus(t *testing.T, agent *devconsul.Agent, what string, cond func(resourceState) bool) resourceState {
	t.Helper()
	var s resourceState
	waitFor(t, 30*time.Second, what, func() bool {
		s = status(t, agent)
		return cond(s)
	})
	return s
}

// wantLeader checks a state against the record of the leader's command.
func wantLeader(t *testing.T, agent *devconsul.Agent, state leaderState, leader record) {
	t.Helper()
	if state.Resource != "r" || state.LeaderID != leader.ID || state.Node != agent.NodeName() ||
		state.Session != leader.Session || strconv.FormatUint(state.FencingToken, 10) != leader.FencingToken || len(state.Metadata) != 0 {
		t.Fatalf("reported %+v; the leader's command has %+v on node %s", state, leader, agent.NodeName())
	}
	since, err := time.Parse(time.RFC3339, state.Since)
	if err != nil || time.Since(since) < 0 || time.Since(since) > time.Minute {
		t.Fatalf("since %q is not a recent RFC 3339 time", state.Since)
	}
}

func TestStatusAndWatchReportTheLeader(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	dir := t.TempDir()
	common := []string{"--address", agent.URL(), "--resource", "r"}

	code, stdout, stderr := consulElect(t, "", append([]string{"status", "--json"}, common...)...)
	if code != 0 {
		t.Fatalf("status with nobody leading: exit %d: %s", code, stderr)
	}
	if state := decodeStatus(t, stdout); !state.equal(leaderState{Resource: "r", Metadata: map[string]string{}}) || len(state.Candidates) != 0 {
		t.Fatalf("status with nobody leading: %+v", state)
	}

	watch, changes := lines(t, "watch", append([]string{"watch", "--json"}, common...)...)
	if state := decodeState(t, nextLine(t, changes, 10*time.Second)); state.LeaderID != "" {
		t.Fatalf("watch first printed %+v; nobody leads yet", state)
	}

	metricsAddr := freeAddress(t)
	a := runCandidate(t, agent, dir, "a", "--metrics-addr", metricsAddr)
	leader := firstLeader(t, dir)
	wantLeader(t, agent, decodeState(t, nextLine(t, changes, 10*time.Second)), leader)

	code, stdout, stderr = consulElect(t, "", append([]string{"status", "--json"}, common...)...)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, stderr)
	}
	wantLeader(t, agent, decodeStatus(t, stdout).leaderState, leader)
	// The candidate registers itself beside campaigning: soon, not first.
	awaitStatus(t, agent, "status to list a, healthy, as the only candidate", func(s resourceState) bool {
		return len(s.Candidates) == 1 && s.Candidates[0].ID == "a" && s.Candidates[0].Healthy
	})
	_, human, _ := consulElect(t, "", append([]string{"status"}, common...)...)
	if !strings.Contains(human, "led by a") || !strings.Contains(human, leader.Session) {
		t.Fatalf("status printed %q", human)
	}

	if body := get(t, "http://"+metricsAddr+"/healthz"); body != "ok\n" {
		t.Fatalf("/healthz: %q", body)
	}
	if body := get(t, "http://"+metricsAddr+"/metrics"); !strings.Contains(body, `consul_elect_is_leader{resource="r"} 1`) {
		t.Fatalf("/metrics does not say this candidate leads:\n%s", body)
	}

	a.signal(syscall.SIGTERM)
	if state := decodeState(t, nextLine(t, changes, 10*time.Second)); state.LeaderID != "" || state.Session != "" {
		t.Fatalf("after the leader stopped, watch printed %+v", state)
	}
	watch.signal(os.Interrupt)
	if code := watch.exitCode(10 * time.Second); code != 0 {
		t.Fatalf("watch exited with %d when interrupted, want 0", code)
	}
}

// freeAddress is a loopback address nobody listens on (yet).
func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func get(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(body)
}

func TestStatusAndWatchShowTheLeadersMetadataAndItsTermsToken(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	common := []string{"--address", agent.URL(), "--resource", "r"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A leader of the Go API, which writes metadata with its id.
	opts := consulelect.DefaultOptions()
	opts.ConsulAddress = agent.URL()
	opts.CandidateID = "api"
	opts.SessionTTL, opts.LockDelay = 10*time.Second, time.Second
	opts.Metadata = map[string]string{"version": "1"}
	election, err := consulelect.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := election.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	if err := election.Campaign("r", nil); err != nil {
		t.Fatal(err)
	}
	lead, err := election.AwaitLeadership(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	status := func() leaderState {
		t.Helper()
		code, stdout, stderr := consulElect(t, "", append([]string{"status", "--json"}, common...)...)
		if code != 0 {
			t.Fatalf("status: exit %d: %s", code, stderr)
		}
		return decodeStatus(t, stdout).leaderState
	}
	want := func(state leaderState, metadata map[string]string) {
		t.Helper()
		if state.LeaderID != "api" || state.Session != lead.Session || state.FencingToken != lead.FencingToken ||
			!maps.Equal(state.Metadata, metadata) {
			t.Fatalf("reported %+v; want leader api, session %s, the term's fencing token %d and metadata %v",
				state, lead.Session, lead.FencingToken, metadata)
		}
	}
	want(status(), map[string]string{"version": "1"})
	watch, changes := lines(t, "watch", append([]string{"watch", "--json"}, common...)...)
	want(decodeState(t, nextLine(t, changes, 10*time.Second)), map[string]string{"version": "1"})

	// Proclaim rewrites the value in the same term: the key's ModifyIndex
	// moves on, the fencing token does not.
	proclaimed := map[string]string{"version": "2", "zone": "eu west"}
	if err := election.Proclaim("r", proclaimed); err != nil {
		t.Fatal(err)
	}
	want(decodeState(t, nextLine(t, changes, 10*time.Second)), proclaimed)
	want(status(), proclaimed)
	if entry, _, err := agent.Operator().Get(ctx, "excalibur/leader-election/r"); err != nil || entry.ModifyIndex == lead.FencingToken {
		t.Fatalf("after Proclaim the key's ModifyIndex is %d (err %v); the test needs it past the token %d", entry.ModifyIndex, err, lead.FencingToken)
	}
	_, human, _ := consulElect(t, "", append([]string{"status"}, common...)...)
	if !strings.Contains(human, fmt.Sprintf("fencing token %d", lead.FencingToken)) || !strings.Contains(human, `metadata version=2 zone="eu west"`) {
		t.Fatalf("status printed %q", human)
	}

	watch.signal(os.Interrupt)
	if code := watch.exitCode(10 * time.Second); code != 0 {
		t.Fatalf("watch exited with %d when interrupted, want 0", code)
	}
}
