package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/backoff"
	"github.com/excalibur/consul-elect/internal/registry"
	"github.com/excalibur/consul-elect/messages"
	"go.uber.org/zap"
)

// leaderState is one observed leadership of a resource, as status prints it
// and watch prints each change. Its JSON keys are a public contract.
type leaderState struct {
	Resource     string `json:"resource"`
	LeaderID     string `json:"leader_id"` // empty when nobody leads
	Node         string `json:"node"`
	Session      string `json:"session"`
	FencingToken uint64 `json:"fencing_token"`
	Since        string `json:"since"` // RFC 3339; empty when nobody leads
	// Metadata is what the leader wrote with its id (Options.Metadata,
	// Proclaim); never nil, so that JSON has {} when there is none.
	Metadata map[string]string `json:"metadata"`
}

// stateOf reads the leadership from the lock key's entry. The fencing token
// is the one the engine handed its leader (consul.FencingToken). A key that
// is not consul-elect's is an error.
func stateOf(resource string, e consul.Entry, exists bool) (leaderState, error) {
	state := leaderState{Resource: resource, Metadata: map[string]string{}}
	if !exists || e.Session == "" {
		return state, nil
	}
	if e.Flags != consul.KeyFlags {
		return state, fmt.Errorf("%s is held by session %s but is not a consul-elect key (flags %#x): something else uses this path", e.Key, e.Session, e.Flags)
	}
	value, err := consul.DecodeValue(e.Value)
	if err != nil {
		return state, fmt.Errorf("%s: %w", e.Key, err)
	}
	state.LeaderID, state.Node, state.Session = value.CandidateID, value.Node, e.Session
	state.FencingToken = consul.FencingToken(e, value)
	if !value.AcquiredAt.IsZero() {
		state.Since = value.AcquiredAt.UTC().Format(time.RFC3339Nano)
	}
	maps.Copy(state.Metadata, value.Metadata)
	return state, nil
}

// equal reports whether s and o say the same: watch prints only changes.
func (s leaderState) equal(o leaderState) bool {
	return s.Resource == o.Resource && s.LeaderID == o.LeaderID && s.Node == o.Node && s.Session == o.Session &&
		s.FencingToken == o.FencingToken && s.Since == o.Since && maps.Equal(s.Metadata, o.Metadata)
}

// describe is the human form of a state, on one line.
func (s leaderState) describe(key string) string {
	if s.Session == "" {
		return key + ": nobody leads"
	}
	line := fmt.Sprintf("%s: led by %s (node %s, session %s, fencing token %d", key, s.LeaderID, s.Node, s.Session, s.FencingToken)
	if since, err := time.Parse(time.RFC3339Nano, s.Since); err == nil {
		line += fmt.Sprintf(", since %s, %s ago", since.Format(time.RFC3339), time.Since(since).Round(time.Second))
	}
	if len(s.Metadata) > 0 {
		pairs := make([]string, 0, len(s.Metadata))
		for _, k := range slices.Sorted(maps.Keys(s.Metadata)) {
			pairs = append(pairs, k+"="+quoteIfNeeded(s.Metadata[k]))
		}
		line += ", metadata " + strings.Join(pairs, " ")
	}
	return line + ")"
}

// quoteIfNeeded quotes v, Go-style, unless it is one plain word.
func quoteIfNeeded(v string) string {
	if v == "" || strings.ContainsFunc(v, func(r rune) bool {
		return unicode.IsSpace(r) || !unicode.IsPrint(r) || strings.ContainsRune(`"=,()`, r)
	}) {
		return strconv.Quote(v)
	}
	return v
}

func printState(w io.Writer, s leaderState, key string, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(s)
	}
	_, err := fmt.Fprintln(w, s.describe(key))
	return err
}

// candidateState is one live candidate for a resource, as status --json and
// list --json print it. Its JSON keys are a public contract.
type candidateState struct {
	ID       string `json:"id"`
	Node     string `json:"node"`
	Priority int    `json:"priority"` // higher leads first
	Healthy  bool   `json:"healthy"`
	Reason   string `json:"reason"` // why it is unhealthy; empty when healthy
	Version  string `json:"version"`
	Started  string `json:"started"` // RFC 3339; when its engine started
}

// resourceState is what status and list say of a resource: who leads, and
// the live candidates, highest priority first.
type resourceState struct {
	leaderState
	// Candidates is never nil, so that JSON has [] when there is none.
	Candidates []candidateState `json:"candidates"`
}

// withCandidates is s with the live candidates among registered (the
// entries under registry.Prefix) that campaign for s's resource.
func withCandidates(s leaderState, registered []consul.Entry) resourceState {
	state := resourceState{leaderState: s, Candidates: []candidateState{}}
	for _, c := range registry.Live(registered, s.Resource) {
		state.Candidates = append(state.Candidates, candidateOf(c))
	}
	return state
}

func candidateOf(c messages.Candidate) candidateState {
	state := candidateState{ID: c.ID, Node: c.Node, Priority: c.Priority, Healthy: c.Healthy, Reason: c.Reason, Version: c.Version}
	if !c.Started.IsZero() {
		state.Started = c.Started.UTC().Format(time.RFC3339Nano)
	}
	return state
}

// health is a candidate's health in words.
func (c candidateState) health() string {
	switch {
	case c.Healthy:
		return "healthy"
	case c.Reason != "":
		return "unhealthy: " + quoteIfNeeded(c.Reason)
	}
	return "unhealthy"
}

// printCandidates is the human form of s's candidates: a table, the leader
// marked.
func printCandidates(w io.Writer, s resourceState) error {
	if len(s.Candidates) == 0 {
		_, err := fmt.Fprintln(w, "  no live candidates")
		return err
	}
	table := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "  CANDIDATE\tROLE\tPRIORITY\tHEALTH\tNODE\tVERSION\tSTARTED")
	for _, c := range s.Candidates {
		role := "standby"
		if c.ID == s.LeaderID {
			role = "leader"
		}
		started := c.Started
		if t, err := time.Parse(time.RFC3339Nano, c.Started); err == nil {
			started = t.Format(time.RFC3339)
		}
		fmt.Fprintf(table, "  %s\t%s\t%d\t%s\t%s\t%s\t%s\n", c.ID, role, c.Priority, c.health(), c.Node, c.Version, started)
	}
	return table.Flush()
}

// readCandidates reads the candidate registry of prefix: one list of its
// keys, whatever the number of resources.
func readCandidates(ctx context.Context, client *consul.Client, prefix string) ([]consul.Entry, error) {
	entries, _, err := client.ListPrefix(ctx, registry.Prefix(prefix), 0, 0)
	return entries, err
}

const statusSynopsis = "consul-elect status --resource NAME [flags] [--json]"

func statusCommand(env *cli, args []string) error {
	var f commonFlags
	var asJSON bool
	fs := newFlagSet("status")
	f.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print one JSON object: resource, leader_id, node, session, fencing_token, since, metadata (an object of strings, {} when there is none) and candidates (an array of objects: id, node, priority, healthy, reason, version, started; highest priority first)")
	if err := f.parse(env, fs, statusSynopsis, args); err != nil {
		return err
	}
	client, err := f.client()
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	entry, exists, _, err := readKey(ctx, client, f.key(), 0, 0)
	if err != nil {
		return fmt.Errorf("cannot read %s from Consul at %s: %w", f.key(), f.consulAddress(), err)
	}
	leader, err := stateOf(f.resource, entry, exists)
	if err != nil {
		return err
	}
	registered, err := readCandidates(ctx, client, f.prefix)
	if err != nil {
		return fmt.Errorf("cannot read the candidates of %s from Consul at %s: %w", f.key(), f.consulAddress(), err)
	}
	state := withCandidates(leader, registered)
	if asJSON {
		return json.NewEncoder(env.stdout).Encode(state)
	}
	if err := printState(env.stdout, leader, f.key(), false); err != nil {
		return err
	}
	return printCandidates(env.stdout, state)
}

const watchSynopsis = "consul-elect watch --resource NAME [flags] [--json]"

// watchWait is how long one blocking query waits at most.
const watchWait = 5 * time.Minute

func watchCommand(env *cli, args []string) error {
	var f commonFlags
	var asJSON bool
	fs := newFlagSet("watch")
	f.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print one JSON object per change (of the leader or its metadata), with the keys of status --json but candidates")
	if err := f.parse(env, fs, watchSynopsis, args); err != nil {
		return err
	}
	logger := f.newLogger(env.stderr).With(zap.String("key", f.key()))
	defer func() { _ = logger.Sync() }()
	client, err := f.client()
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var (
		index   uint64
		last    *leaderState
		retries int
	)
	for {
		entry, exists, next, err := readKey(ctx, client, f.key(), index, watchWait)
		switch {
		case ctx.Err() != nil:
			return nil // interrupted
		case err != nil && last == nil:
			return fmt.Errorf("cannot read %s from Consul at %s: %w", f.key(), f.consulAddress(), err)
		case err != nil:
			// Consul down for a while is no reason to stop watching.
			wait := retryWait(retries)
			retries++
			logger.Warn("watching failed; retrying", zap.Error(err), zap.Duration("in", wait))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			continue
		}
		retries, index = 0, next
		state, err := stateOf(f.resource, entry, exists)
		if err != nil {
			logger.Error("cannot tell who leads", zap.Error(err))
			continue
		}
		if last != nil && last.equal(state) {
			continue // nothing status shows changed (the key or another under its prefix did, or the query timed out)
		}
		last = &state
		if err := printState(env.stdout, state, f.key(), asJSON); err != nil {
			return err // stdout closed: nobody is listening
		}
	}
}

// readKey reads key with the engine's own call, a list of the key as a
// prefix: exists is false when there is no such key (keys that merely start
// with it are left out). With index > 0 it is a blocking query, which answers
// when something under the prefix changed after index, or after wait: the
// watch. It returns the index for the next call, also on a missing key, so
// that a watcher blocks until the key is created.
func readKey(ctx context.Context, client *consul.Client, key string, index uint64, wait time.Duration) (e consul.Entry, exists bool, next uint64, err error) {
	entries, next, err := client.ListPrefix(ctx, key, index, wait)
	if err != nil {
		return consul.Entry{}, false, index, err
	}
	for _, e := range entries {
		if e.Key == key {
			return e, true, next, nil
		}
	}
	return consul.Entry{}, false, next, nil
}

// retryWait is the wait before retry number n: doubling from 100ms to 10s.
func retryWait(n int) time.Duration { return backoff.Delay(100*time.Millisecond, 10*time.Second, n) }

func noArgs(args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}
