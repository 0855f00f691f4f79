package consul

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// SessionSpec describes the session to create.
type SessionSpec struct {
	Name      string
	TTL       time.Duration
	LockDelay time.Duration // 0 means none
	// Node names the node the session belongs to; empty: the agent's node.
	Node string
	// NodeChecks and ServiceChecks bind the session to health checks; it is
	// invalidated when one goes critical. NoChecks leaves out even the
	// default serfHealth (needed for a session in a remote datacenter).
	NodeChecks    []string
	ServiceChecks []string
	NoChecks      bool
}

// CreateSession creates a session with behaviour "release" and returns its ID.
//
// TTL and LockDelay are sent as duration strings: the api package drops a
// zero LockDelay (so Consul's 15 s default applies) and sends others as a
// number that Consul reads as seconds when it is under 1000.
func (c *Client) CreateSession(ctx context.Context, spec SessionSpec) (string, error) {
	body := map[string]any{
		"Name":      spec.Name,
		"TTL":       spec.TTL.String(),
		"LockDelay": spec.LockDelay.String(),
		"Behavior":  api.SessionBehaviorRelease,
	}
	if spec.Node != "" {
		body["Node"] = spec.Node
	}
	switch {
	case spec.NoChecks:
		body["NodeChecks"] = []string{}
	case len(spec.NodeChecks) > 0 || len(spec.ServiceChecks) > 0:
		body["NodeChecks"] = append([]string{}, spec.NodeChecks...)
		serviceChecks := make([]api.ServiceCheck, 0, len(spec.ServiceChecks))
		for _, id := range spec.ServiceChecks {
			serviceChecks = append(serviceChecks, api.ServiceCheck{ID: id})
		}
		body["ServiceChecks"] = serviceChecks
	}
	var out struct{ ID string }
	_, err := c.api.Raw().Write("/v1/session/create", body, &out, c.write(ctx))
	if err != nil {
		msg := err.Error()
		switch {
		case strings.Contains(msg, "TTL") && strings.Contains(msg, "must be between"):
			return "", &Error{Op: "create session", Kind: ErrRejected,
				Err: fmt.Errorf("Consul refused SessionTTL %s (below the server's session_ttl_min or above its maximum): %w", spec.TTL, err)}
		case strings.Contains(msg, "cross datacenter lock must be created at server agent"):
			return "", &Error{Op: "create session", Kind: ErrRejected,
				Err: fmt.Errorf("a session in another datacenter can only be created through a server agent; point ConsulAddress at a server: %w", err)}
		case strings.Contains(msg, "Missing node registration"):
			return "", &Error{Op: "create session", Kind: ErrRejected,
				Err: fmt.Errorf("node %q is not registered in the session's datacenter: %w", spec.Node, err)}
		case strings.Contains(msg, "Missing check"), strings.Contains(msg, "Check '") && strings.Contains(msg, "critical state"):
			return "", &Error{Op: "create session", Kind: ErrRejected, Err: err}
		}
		return "", wrap("create session", err)
	}
	return out.ID, nil
}

// RenewSession renews the session's TTL. It returns ErrSessionGone when
// Consul no longer knows the session.
func (c *Client) RenewSession(ctx context.Context, id string) error {
	entry, _, err := c.api.Session().Renew(id, c.write(ctx))
	if err != nil {
		return wrap("renew session", err)
	}
	if entry == nil { // api answers a 404 with no entry and no error
		return &Error{Op: "renew session", Kind: ErrSessionGone, Err: fmt.Errorf("session %s", id)}
	}
	return nil
}

// DestroySession destroys the session, releasing every key it holds (with
// lock-delay). Destroying a session that is already gone succeeds.
func (c *Client) DestroySession(ctx context.Context, id string) error {
	_, err := c.api.Session().Destroy(id, c.write(ctx))
	return wrap("destroy session", err)
}

// SessionInfo describes a live session.
type SessionInfo struct {
	ID        string
	Node      string
	Name      string
	LockDelay time.Duration
	TTL       time.Duration
}

// SessionInfo reads a session; ErrSessionGone when it does not exist.
func (c *Client) SessionInfo(ctx context.Context, id string) (SessionInfo, error) {
	entry, _, err := c.api.Session().Info(id, c.query(ctx))
	if err != nil {
		return SessionInfo{}, wrap("read session", err)
	}
	if entry == nil {
		return SessionInfo{}, &Error{Op: "read session", Kind: ErrSessionGone, Err: fmt.Errorf("session %s", id)}
	}
	ttl, _ := time.ParseDuration(entry.TTL)
	return SessionInfo{ID: entry.ID, Node: entry.Node, Name: entry.Name, LockDelay: entry.LockDelay, TTL: ttl}, nil
}
