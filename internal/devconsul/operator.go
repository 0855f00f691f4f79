package devconsul

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/excalibur/consul-elect/consul"
)

// Operator is a test's hands on an agent, as an operator or another
// application would use it: it reads and writes keys without any lock,
// destroys sessions and registers health checks, none of which the election
// engine does. Its methods have the signatures of inmem.Store's, so a test
// written against an interface runs on both.
//
// It sends the agent's management token (if any). Errors are *consul.Error,
// classified by status code as package consul classifies them: 403 is
// consul.ErrPermissionDenied, 400 and 413 are consul.ErrRejected, anything
// else is transient (no Kind).
type Operator struct {
	agent *Agent
}

// Operator returns the operator's hands on a.
func (a *Agent) Operator() *Operator { return &Operator{agent: a} }

// kvEntry is one entry of /v1/kv as Consul encodes it (Value in base64).
type kvEntry struct {
	Key         string
	Value       []byte
	Flags       uint64
	Session     string
	LockIndex   uint64
	ModifyIndex uint64
}

// Get reads key; ok is false when it does not exist.
func (o *Operator) Get(ctx context.Context, key string) (e consul.Entry, ok bool, err error) {
	var entries []kvEntry
	status, err := o.request(ctx, "read "+key, http.MethodGet, kvPath(key), nil, &entries)
	if status == http.StatusNotFound || err == nil && len(entries) == 0 {
		return consul.Entry{}, false, nil
	}
	if err != nil {
		return consul.Entry{}, false, err
	}
	k := entries[0]
	return consul.Entry{Key: k.Key, Value: k.Value, Flags: k.Flags, Session: k.Session, LockIndex: k.LockIndex, ModifyIndex: k.ModifyIndex}, true, nil
}

// Put writes key with flags, without any lock: a key held by a session stays
// held (Consul's KV PUT keeps the session and resets the LockIndex).
func (o *Operator) Put(ctx context.Context, key string, value []byte, flags uint64) error {
	return o.do(ctx, "write "+key, http.MethodPut, kvPath(key)+"?flags="+strconv.FormatUint(flags, 10), value, nil)
}

// Delete removes key.
func (o *Operator) Delete(ctx context.Context, key string) error {
	return o.do(ctx, "delete "+key, http.MethodDelete, kvPath(key), nil, nil)
}

// DestroySession destroys session id, releasing every key it holds (with
// lock-delay). Destroying a session that is already gone succeeds.
func (o *Operator) DestroySession(ctx context.Context, id string) error {
	return o.do(ctx, "destroy session", http.MethodPut, "/v1/session/destroy/"+url.PathEscape(id), nil, nil)
}

// SessionInfo reads session id; consul.ErrSessionGone when it does not exist.
func (o *Operator) SessionInfo(ctx context.Context, id string) (consul.SessionInfo, error) {
	var sessions []struct {
		ID, Node, Name string
		LockDelay      time.Duration // nanoseconds
		TTL            string
	}
	if err := o.do(ctx, "read session", http.MethodGet, "/v1/session/info/"+url.PathEscape(id), nil, &sessions); err != nil {
		return consul.SessionInfo{}, err
	}
	if len(sessions) == 0 {
		return consul.SessionInfo{}, &consul.Error{Op: "read session", Kind: consul.ErrSessionGone, Err: fmt.Errorf("session %s", id)}
	}
	s := sessions[0]
	ttl, _ := time.ParseDuration(s.TTL)
	return consul.SessionInfo{ID: s.ID, Node: s.Node, Name: s.Name, LockDelay: s.LockDelay, TTL: ttl}, nil
}

// RegisterTTLCheck registers TTL check id on the agent with the given initial
// status (passing, warning or critical). A serviceID attaches it to a
// service of the agent.
func (o *Operator) RegisterTTLCheck(ctx context.Context, id, serviceID string, ttl time.Duration, status string) error {
	body, err := json.Marshal(map[string]string{"ID": id, "Name": id, "ServiceID": serviceID, "TTL": ttl.String(), "Status": status})
	if err != nil {
		return err
	}
	return o.do(ctx, "register check "+id, http.MethodPut, "/v1/agent/check/register", body, nil)
}

// UpdateCheck sets TTL check id's status (passing, warning, critical) and
// output.
func (o *Operator) UpdateCheck(ctx context.Context, id, status, output string) error {
	body, err := json.Marshal(map[string]string{"Status": status, "Output": output})
	if err != nil {
		return err
	}
	return o.do(ctx, "update check "+id, http.MethodPut, "/v1/agent/check/update/"+url.PathEscape(id), body, nil)
}

// DeregisterCheck removes check id from the agent.
func (o *Operator) DeregisterCheck(ctx context.Context, id string) error {
	return o.do(ctx, "deregister check "+id, http.MethodPut, "/v1/agent/check/deregister/"+url.PathEscape(id), nil, nil)
}

// do sends one request for operation op and decodes a 200 answer into out
// (if non-nil).
func (o *Operator) do(ctx context.Context, op, method, path string, body []byte, out any) error {
	_, err := o.request(ctx, op, method, path, body, out)
	return err
}

// request is do that also returns the answer's status code (0 when there is
// none).
func (o *Operator) request(ctx context.Context, op, method, path string, body []byte, out any) (int, error) {
	status, data, err := o.agent.send(ctx, method, path, body)
	switch {
	case err != nil:
		return status, &consul.Error{Op: op, Err: err}
	case status != http.StatusOK:
		var kind error
		switch status {
		case http.StatusForbidden:
			kind = consul.ErrPermissionDenied
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			kind = consul.ErrRejected
		}
		return status, &consul.Error{Op: op, Kind: kind, Err: statusError(method, path, status, data)}
	case out != nil:
		if err := json.Unmarshal(data, out); err != nil {
			return status, &consul.Error{Op: op, Err: fmt.Errorf("undecodable answer: %w", err)}
		}
	}
	return status, nil
}

// kvPath is the escaped path of key in the KV API.
func kvPath(key string) string {
	return (&url.URL{Path: "/v1/kv/" + strings.TrimPrefix(key, "/")}).EscapedPath()
}
