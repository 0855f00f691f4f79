package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/excalibur/consul-elect/consul"
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
}

// stateOf reads the leadership from the lock key's entry. The fencing token
// is the raft index of the write that acquired the key, as the engine hands
// it to its leader. A key that is not consul-elect's is an error.
func stateOf(resource string, e consul.Entry, exists bool) (leaderState, error) {
	state := leaderState{Resource: resource}
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
	state.LeaderID, state.Node, state.Session, state.FencingToken = value.CandidateID, value.Node, e.Session, e.ModifyIndex
	if !value.AcquiredAt.IsZero() {
		state.Since = value.AcquiredAt.UTC().Format(time.RFC3339Nano)
	}
	return state, nil
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
	return line + ")"
}

func printState(w io.Writer, s leaderState, key string, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(s)
	}
	_, err := fmt.Fprintln(w, s.describe(key))
	return err
}

const statusSynopsis = "consul-elect status --resource NAME [flags] [--json]"

func statusCommand(env *cli, args []string) error {
	var f commonFlags
	var asJSON bool
	fs := newFlagSet("status")
	f.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print one JSON object: resource, leader_id, node, session, fencing_token, since")
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
	entry, exists, err := client.Get(ctx, f.key())
	if err != nil {
		return fmt.Errorf("cannot read %s from Consul at %s: %w", f.key(), f.consulAddress(), err)
	}
	state, err := stateOf(f.resource, entry, exists)
	if err != nil {
		return err
	}
	return printState(env.stdout, state, f.key(), asJSON)
}

const watchSynopsis = "consul-elect watch --resource NAME [flags] [--json]"

// watchWait is how long one blocking query waits at most.
const watchWait = 5 * time.Minute

func watchCommand(env *cli, args []string) error {
	var f commonFlags
	var asJSON bool
	fs := newFlagSet("watch")
	f.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print one JSON object per change, with the keys of status --json")
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
		entry, exists, next, err := client.WatchKey(ctx, f.key(), index, watchWait)
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
		if last != nil && *last == state {
			continue // the key changed, the leadership did not (or the query timed out)
		}
		last = &state
		if err := printState(env.stdout, state, f.key(), asJSON); err != nil {
			return err // stdout closed: nobody is listening
		}
	}
}

// retryWait is the wait before retry number n: doubling from 100ms to 10s.
func retryWait(n int) time.Duration {
	return min(100*time.Millisecond<<min(n, 10), 10*time.Second)
}

func noArgs(args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}
