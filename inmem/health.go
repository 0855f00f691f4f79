package inmem

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/blocking"
)

// NodeCheck reads check id on node. With index > 0 it is a blocking query
// that answers when any check changes after index, after wait, or when ctx
// ends. A check not registered on node is ErrRejected, as with
// consul.Client.
func (s *Store) NodeCheck(ctx context.Context, node, checkID string, index uint64, wait time.Duration) (consul.Check, uint64, error) {
	op := "read health check " + checkID
	if err := s.enter(ctx, op); err != nil {
		return consul.Check{}, index, err
	}
	current := func() uint64 { return max(s.checkIndex, 1) }
	if err := s.block(ctx, op, index, wait, current); err != nil {
		return consul.Check{}, index, err
	}
	c, ok := s.checks[checkID]
	var found consul.Check
	if ok && node == s.cfg.node {
		found = c.Check
	}
	next := blocking.NextIndex(index, current())
	s.mu.Unlock()
	if err := s.leave(ctx, op); err != nil {
		return consul.Check{}, index, err
	}
	if found.ID == "" {
		return consul.Check{}, next, &consul.Error{Op: op, Kind: consul.ErrRejected,
			Err: fmt.Errorf("HealthCheckID %q is not registered on node %q", checkID, node)}
	}
	return found, next, nil
}

// RegisterTTLCheck registers (or replaces) check id on the store's node with
// status (passing, warning or critical; empty is critical, Consul's default).
// With ttl > 0 it goes critical, output "TTL expired", when not updated for
// ttl; with 0 it changes only when updated. serviceID is recorded, not
// checked. Registering it critical invalidates the sessions bound to it. It
// is an operator method: never frozen.
func (s *Store) RegisterTTLCheck(_ context.Context, id, serviceID string, ttl time.Duration, status string) error {
	op := "register check " + id
	if status == "" {
		status = StatusCritical
	}
	if err := validCheck(id, status); err != nil {
		return &consul.Error{Op: op, Kind: consul.ErrRejected, Err: err}
	}
	if err := s.operate(op); err != nil {
		return err
	}
	defer s.mu.Unlock()
	c, ok := s.checks[id]
	if !ok {
		c = &check{Check: consul.Check{ID: id, Status: status}}
		s.checks[id] = c
		c.ServiceID, c.ttl = serviceID, ttl
		s.checkIndex = s.next()
		if status == StatusCritical {
			s.invalidateBoundTo(id, s.checkIndex)
		}
	} else {
		c.ServiceID, c.ttl = serviceID, ttl
		s.setCheckStatus(id, status, "")
	}
	c.expiresAt = time.Time{}
	if ttl > 0 {
		c.expiresAt = time.Now().Add(ttl)
		s.wakeTimers()
	}
	return nil
}

// UpdateCheck sets a check's status and output, as a TTL check's update does
// (and restarts its TTL). Critical invalidates the sessions bound to it.
// serfHealth can be updated too: critical simulates the node failing. It is
// an operator method: never frozen.
func (s *Store) UpdateCheck(_ context.Context, id, status, output string) error {
	op := "update check " + id
	if err := validCheck(id, status); err != nil {
		return &consul.Error{Op: op, Kind: consul.ErrRejected, Err: err}
	}
	if err := s.operate(op); err != nil {
		return err
	}
	defer s.mu.Unlock()
	c, ok := s.checks[id]
	if !ok {
		return &consul.Error{Op: op, Err: fmt.Errorf("Unknown check ID %q", id)}
	}
	s.setCheckStatus(id, status, output)
	if c.ttl > 0 {
		c.expiresAt = time.Now().Add(c.ttl)
		s.wakeTimers()
	}
	return nil
}

// DeregisterCheck removes a check; the sessions bound to it are invalidated,
// as in Consul. It is an operator method: never frozen.
func (s *Store) DeregisterCheck(_ context.Context, id string) error {
	op := "deregister check " + id
	if err := s.operate(op); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.checks[id]; !ok {
		return &consul.Error{Op: op, Err: fmt.Errorf("Unknown check ID %q", id)}
	}
	delete(s.checks, id)
	s.checkIndex = s.next()
	s.invalidateBoundTo(id, s.checkIndex)
	return nil
}

// setCheckStatus, with s.mu held, changes a registered check in one write
// (none if nothing changes); critical invalidates the bound sessions in the
// same write.
func (s *Store) setCheckStatus(id, status, output string) {
	c := s.checks[id]
	if c.Status == status && c.Output == output {
		return
	}
	c.Status, c.Output = status, output
	s.checkIndex = s.next()
	if status == StatusCritical {
		s.invalidateBoundTo(id, s.checkIndex)
	}
}

func validCheck(id, status string) error {
	if id == "" {
		return errors.New("the check ID is empty")
	}
	switch status {
	case StatusPassing, StatusWarning, StatusCritical:
		return nil
	}
	return fmt.Errorf("status %q is not passing, warning or critical", status)
}
