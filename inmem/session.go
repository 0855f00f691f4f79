package inmem

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/excalibur/consul-elect/consul"
)

// Agent describes the store's one node, which is also its server.
func (s *Store) Agent(ctx context.Context) (consul.AgentInfo, error) {
	const op = "read agent"
	if err := s.enter(ctx, op); err != nil {
		return consul.AgentInfo{}, err
	}
	info := consul.AgentInfo{Node: s.cfg.node, Datacenter: s.cfg.datacenter, Server: true}
	s.mu.Unlock()
	if err := s.leave(ctx, op); err != nil {
		return consul.AgentInfo{}, err
	}
	return info, nil
}

// ServerNode returns the store's node for its own datacenter. Any other
// datacenter is unreachable, as an unfederated one is to Consul (a transient
// error).
func (s *Store) ServerNode(ctx context.Context, datacenter string) (string, error) {
	op := "find a server node in datacenter " + datacenter
	if err := s.enter(ctx, op); err != nil {
		return "", err
	}
	node := s.cfg.node
	s.mu.Unlock()
	if err := s.leave(ctx, op); err != nil {
		return "", err
	}
	if datacenter != s.cfg.datacenter {
		return "", &consul.Error{Op: op, Err: errors.New("rpc error: No path to datacenter")}
	}
	return node, nil
}

// CreateSession creates a session with behaviour release. Like Consul it
// refuses (ErrRejected) a TTL outside [session_ttl_min, 24h] (0 is no TTL),
// a node other than the store's, and checks that are missing or critical.
// Without NodeChecks, ServiceChecks or NoChecks the session is bound to
// serfHealth.
func (s *Store) CreateSession(ctx context.Context, spec consul.SessionSpec) (string, error) {
	const op = "create session"
	if err := s.enter(ctx, op); err != nil {
		return "", err
	}
	id, err := s.createSession(spec)
	s.mu.Unlock()
	s.wakeTimers()
	if lerr := s.leave(ctx, op); lerr != nil {
		return "", lerr
	}
	if err != nil {
		return "", &consul.Error{Op: op, Kind: consul.ErrRejected, Err: err}
	}
	return id, nil
}

func (s *Store) createSession(spec consul.SessionSpec) (string, error) {
	if spec.TTL != 0 && (spec.TTL < s.cfg.minTTL || spec.TTL > MaxSessionTTL) {
		return "", fmt.Errorf("Consul refused SessionTTL %s (below the server's session_ttl_min or above its maximum): Invalid Session TTL '%d', must be between [%v=%v]",
			spec.TTL, spec.TTL, s.cfg.minTTL, MaxSessionTTL)
	}
	node := spec.Node
	if node == "" {
		node = s.cfg.node
	}
	if node != s.cfg.node {
		return "", fmt.Errorf("node %q is not registered in the session's datacenter: Missing node registration", node)
	}
	var checks []string
	switch {
	case spec.NoChecks:
	case len(spec.NodeChecks) > 0 || len(spec.ServiceChecks) > 0:
		checks = append(append(checks, spec.NodeChecks...), spec.ServiceChecks...)
	default:
		checks = []string{SerfHealth}
	}
	for _, id := range checks {
		c, ok := s.checks[id]
		if !ok {
			return "", fmt.Errorf("Missing check '%s' registration", id)
		}
		if c.Status == StatusCritical {
			return "", fmt.Errorf("Check '%s' is in %s state", id, c.Status)
		}
	}
	sess := &session{
		info:   consul.SessionInfo{ID: newID(), Node: node, Name: spec.Name, LockDelay: spec.LockDelay, TTL: spec.TTL},
		checks: checks,
	}
	if spec.TTL > 0 {
		sess.expiresAt = time.Now().Add(s.expiry(spec.TTL))
	}
	s.sessions[sess.info.ID] = sess
	s.next()
	return sess.info.ID, nil
}

// expiry is how long after its last renewal a session with ttl is
// invalidated.
func (s *Store) expiry(ttl time.Duration) time.Duration {
	return time.Duration(float64(ttl) * s.cfg.ttlMultiplier)
}

// RenewSession restarts the session's TTL. An unknown session is
// ErrSessionGone. Renewing is not a write: no index changes.
func (s *Store) RenewSession(ctx context.Context, id string) error {
	const op = "renew session"
	if err := s.enter(ctx, op); err != nil {
		return err
	}
	sess, ok := s.sessions[id]
	if ok && sess.info.TTL > 0 {
		sess.expiresAt = time.Now().Add(s.expiry(sess.info.TTL))
	}
	s.mu.Unlock()
	if err := s.leave(ctx, op); err != nil {
		return err
	}
	if !ok {
		return &consul.Error{Op: op, Kind: consul.ErrSessionGone, Err: fmt.Errorf("session %s", id)}
	}
	return nil
}

// DestroySession invalidates the session: its keys are released in one
// write and each starts its lock-delay. Destroying an unknown session
// succeeds. Being part of actors.Backend, it is frozen by Freeze.
func (s *Store) DestroySession(ctx context.Context, id string) error {
	const op = "destroy session"
	if err := s.enter(ctx, op); err != nil {
		return err
	}
	if _, ok := s.sessions[id]; ok {
		s.invalidate(id, s.next())
	}
	s.mu.Unlock()
	return s.leave(ctx, op)
}

// SessionInfo describes a live session; ErrSessionGone when it is not.
func (s *Store) SessionInfo(ctx context.Context, id string) (consul.SessionInfo, error) {
	const op = "read session"
	if err := s.enter(ctx, op); err != nil {
		return consul.SessionInfo{}, err
	}
	sess, ok := s.sessions[id]
	var info consul.SessionInfo
	if ok {
		info = sess.info
	}
	s.mu.Unlock()
	if err := s.leave(ctx, op); err != nil {
		return consul.SessionInfo{}, err
	}
	if !ok {
		return consul.SessionInfo{}, &consul.Error{Op: op, Kind: consul.ErrSessionGone, Err: fmt.Errorf("session %s", id)}
	}
	return info, nil
}

// invalidate, with s.mu held, deletes session id in write idx, releasing its
// keys and starting their lock-delay, as Consul's deleteSessionTxn does.
func (s *Store) invalidate(id string, idx uint64) {
	sess, ok := s.sessions[id]
	if !ok {
		return
	}
	delete(s.sessions, id)
	delay := min(sess.info.LockDelay, MaxLockDelay)
	now := time.Now()
	for key, e := range s.kvs {
		if e.Session != id {
			continue
		}
		released := *e
		released.Session = ""
		s.set(released, idx)
		if delay > 0 {
			s.lockDelays[key] = now.Add(delay)
		}
	}
}

// invalidateBoundTo, with s.mu held, invalidates every session bound to
// check id in write idx.
func (s *Store) invalidateBoundTo(checkID string, idx uint64) {
	for id, sess := range s.sessions {
		if slices.Contains(sess.checks, checkID) {
			s.invalidate(id, idx)
		}
	}
}
