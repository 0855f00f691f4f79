package consul

import (
	"context"
	"fmt"
	"time"

	"github.com/excalibur/consul-elect/internal/blocking"
	"github.com/hashicorp/consul/api"
)

// Check is one health check's state.
type Check struct {
	ID        string
	ServiceID string // empty for a node check
	Status    string // passing, warning, critical
	Output    string
}

// Critical reports whether the check's status is critical.
func (c Check) Critical() bool { return c.Status == api.HealthCritical }

// NodeCheck reads check id on node. With index > 0 it blocks until the node's
// checks change after index or wait passes. It returns the check, the index
// for the next call, and an error naming the check when it is not registered.
func (c *Client) NodeCheck(ctx context.Context, node, id string, index uint64, wait time.Duration) (Check, uint64, error) {
	checks, meta, err := c.api.Health().Node(node, c.blockingQuery(ctx, index, wait))
	if err != nil {
		return Check{}, index, wrap("read health check "+id, err)
	}
	next := blocking.NextIndex(index, meta.LastIndex)
	for _, check := range checks {
		if check.CheckID == id {
			return Check{ID: id, ServiceID: check.ServiceID, Status: check.Status, Output: check.Output}, next, nil
		}
	}
	return Check{}, next, &Error{Op: "read health check " + id, Kind: ErrRejected,
		Err: fmt.Errorf("HealthCheckID %q is not registered on node %q", id, node)}
}

// UpdateCheck sets a TTL check's status (passing, warning, critical).
func (c *Client) UpdateCheck(ctx context.Context, id, status, output string) error {
	return wrap("update check "+id, c.api.Agent().UpdateTTLOpts(id, output, status, c.query(ctx)))
}

// DeregisterService removes a service (and its checks) from the local agent.
func (c *Client) DeregisterService(ctx context.Context, id string) error {
	return wrap("deregister service "+id, c.api.Agent().ServiceDeregisterOpts(id, c.query(ctx)))
}
