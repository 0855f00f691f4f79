// Package registry is the layout of the candidate registry in Consul KV: one
// key per candidate, <KeyPrefix>-candidates/<candidate id>, held by the
// candidate's session, so that it reads as gone (no session) once the
// session has ended. It sits beside the lock keys, not under them, so that
// the key watcher never reads it. The engine writes it; the command-line
// tool and Election.Candidates read it.
package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/messages"
)

// Prefix is where the candidates of keyPrefix register.
func Prefix(keyPrefix string) string { return keyPrefix + "-candidates/" }

// Key is candidate id's key.
func Key(keyPrefix, id string) string { return Prefix(keyPrefix) + url.PathEscape(id) }

// Record is what a candidate writes of itself.
type Record struct {
	ID        string    `json:"id"`
	Node      string    `json:"node"`
	Priority  int       `json:"priority"`
	Healthy   bool      `json:"healthy"`
	Reason    string    `json:"reason,omitempty"`
	Version   string    `json:"version"`
	Started   time.Time `json:"started"`
	Resources []string  `json:"resources"`
}

// Encode returns the value of r's key, with its resources sorted.
func Encode(r Record) []byte {
	r.Resources = slices.Sorted(slices.Values(r.Resources))
	data, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("registry: encoding a record: %v", err)) // strings, ints, a time
	}
	return data
}

// Live returns the live candidates among entries (keys under Prefix), for
// resource (every one when resource is empty), highest priority first, then
// by id. Entries without a session are gone; unreadable ones are skipped.
func Live(entries []consul.Entry, resource string) []messages.Candidate {
	var live []messages.Candidate
	for _, e := range entries {
		if e.Session == "" {
			continue
		}
		var r Record
		if json.Unmarshal(e.Value, &r) != nil || r.ID == "" {
			continue
		}
		if resource != "" && !slices.Contains(r.Resources, resource) {
			continue
		}
		live = append(live, messages.Candidate{ID: r.ID, Node: r.Node, Session: e.Session, Priority: r.Priority, Healthy: r.Healthy,
			Reason: r.Reason, Version: r.Version, Started: r.Started, Resources: r.Resources})
	}
	slices.SortFunc(live, func(a, b messages.Candidate) int {
		if a.Priority != b.Priority {
			return b.Priority - a.Priority
		}
		return strings.Compare(a.ID, b.ID)
	})
	return live
}

// Target is whom a switchover of a resource led by leader hands over to: to
// if given, else the healthy live candidate of highest priority other than
// leader. It fails with messages.ErrNoCandidate when that is no live, healthy
// candidate for the resource.
func Target(candidates []messages.Candidate, leader, to string) (string, error) {
	for _, c := range candidates {
		switch {
		case to != "" && c.ID == to && !c.Healthy:
			return "", fmt.Errorf("%w: %s is unhealthy (%s)", messages.ErrNoCandidate, to, c.Reason)
		case to != "" && c.ID == to && c.ID == leader:
			return "", fmt.Errorf("%w: %s already leads", messages.ErrNoCandidate, to)
		case to != "" && c.ID == to:
			return to, nil
		case to == "" && c.Healthy && c.ID != leader:
			return c.ID, nil
		}
	}
	if to != "" {
		return "", fmt.Errorf("%w: %s is not a live candidate for the resource", messages.ErrNoCandidate, to)
	}
	return "", messages.ErrNoCandidate
}

// Version is the version of consul-elect this program was built with.
func Version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	if info.Main.Path == "github.com/excalibur/consul-elect" {
		return info.Main.Version
	}
	for _, dep := range info.Deps {
		if dep.Path == "github.com/excalibur/consul-elect" {
			return dep.Version
		}
	}
	return "(unknown)"
}

// KV is what RequestHandover needs of Consul (consul.Client and the engine's
// backends have it).
type KV interface {
	ListPrefix(ctx context.Context, prefix string, index uint64, wait time.Duration) ([]consul.Entry, uint64, error)
	Proclaim(ctx context.Context, key, session string, value []byte) (consul.Entry, error)
}

// RequestHandover asks the leader of resource for a switchover: it picks
// the target (Target), then writes the request into the lock key's value in
// the leader's term (a check-session write that keeps its fencing token).
// It returns the target and the term asked to hand over: the switchover is
// done once the key is held in another term (another fencing token).
func RequestHandover(ctx context.Context, kv KV, keyPrefix, resource, to string) (target string, term messages.LeaderChanged, err error) {
	key := keyPrefix + "/" + resource
	entries, _, err := kv.ListPrefix(ctx, key, 0, 0)
	if err != nil {
		return "", term, err
	}
	i := slices.IndexFunc(entries, func(e consul.Entry) bool { return e.Key == key })
	if i < 0 || entries[i].Session == "" {
		return "", term, messages.ErrNoLeader
	}
	lock := entries[i]
	if lock.Flags != consul.KeyFlags {
		return "", term, fmt.Errorf("%s is not a consul-elect key", key)
	}
	v, err := consul.DecodeValue(lock.Value)
	if err != nil {
		return "", term, err
	}
	registered, _, err := kv.ListPrefix(ctx, Prefix(keyPrefix), 0, 0)
	if err != nil {
		return "", term, err
	}
	if target, err = Target(Live(registered, resource), v.CandidateID, to); err != nil {
		return "", term, err
	}
	v.Token = consul.FencingToken(lock, v)
	v.Handover = &consul.Handover{To: target, At: time.Now().UTC()}
	if _, err := kv.Proclaim(ctx, key, lock.Session, consul.EncodeValue(v)); err != nil {
		return "", term, fmt.Errorf("writing the switchover request: %w", err)
	}
	return target, messages.LeaderChanged{Resource: resource, LeaderID: v.CandidateID, Node: v.Node, Session: lock.Session,
		FencingToken: v.Token, Since: v.AcquiredAt, Metadata: v.Metadata}, nil
}
