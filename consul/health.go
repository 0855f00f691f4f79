package consul

import (
	"context"
	"fmt"
	"time"

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
	checks, meta, err := c.api.Health().Node(node, c.blocking(ctx, index, wait))
	if err != nil {
		return Check{}, index, wrap("read health check "+id, err)
	}
	next := NextIndex(index, meta.LastIndex)
	for _, check := range checks {
		if check.CheckID == id {
			return Check{ID: id, ServiceID: check.ServiceID, Status: check.Status, Output: check.Output}, next, nil
		}
	}
	return Check{}, next, &Error{Op: "read health check " + id, Kind: ErrRejected,
		Err: fmt.Errorf("HealthCheckID %q is not registered on node %q", id, node)}
}

// RegisterTTLCheck registers a TTL check on the local agent, with the given
// initial status (passing, warning or critical). A serviceID attaches it to a
// service of the agent.
func (c *Client) RegisterTTLCheck(ctx context.Context, id, serviceID string, ttl time.Duration, status string) error {
	reg := &api.AgentCheckRegistration{ID: id, Name: id, ServiceID: serviceID,
		AgentServiceCheck: api.AgentServiceCheck{TTL: ttl.String(), Status: status}}
	return wrap("register check "+id, c.api.Agent().CheckRegisterOpts(reg, c.query(ctx)))
}

// UpdateCheck sets a TTL check's status (passing, warning, critical).
func (c *Client) UpdateCheck(ctx context.Context, id, status, output string) error {
	return wrap("update check "+id, c.api.Agent().UpdateTTLOpts(id, output, status, c.query(ctx)))
}

// DeregisterCheck removes a check from the local agent.
func (c *Client) DeregisterCheck(ctx context.Context, id string) error {
	return wrap("deregister check "+id, c.api.Agent().CheckDeregisterOpts(id, c.query(ctx)))
}

// FailoverCheck names the service and TTL check a candidate registers on
// its local agent for fast failover.
type FailoverCheck struct {
	ServiceID string
	CheckID   string
	TTL       time.Duration
}

// failoverReapAfter is when Consul removes the service of a candidate that
// died without deregistering it (its check critical that long). Consul's
// minimum is one minute.
const failoverReapAfter = time.Minute

// RegisterFailoverCheck registers (again) the candidate's service with its
// TTL check, passing. A session bound to the check through ServiceChecks is
// invalidated when the check is not refreshed within TTL — long before the
// session's own TTL — and the service is reaped a minute after its check
// went critical, so a killed candidate leaves nothing behind.
func (c *Client) RegisterFailoverCheck(ctx context.Context, check FailoverCheck) error {
	reg := &api.AgentServiceRegistration{
		ID: check.ServiceID, Name: "consul-elect",
		Check: &api.AgentServiceCheck{
			CheckID: check.CheckID, Name: "consul-elect candidate alive", TTL: check.TTL.String(),
			Status: api.HealthPassing, DeregisterCriticalServiceAfter: failoverReapAfter.String(),
		},
	}
	opts := api.ServiceRegisterOpts{}.WithContext(ctx)
	return wrap("register fast-failover check", c.api.Agent().ServiceRegisterOpts(reg, opts))
}

// DeregisterService removes a service (and its checks) from the local agent.
func (c *Client) DeregisterService(ctx context.Context, id string) error {
	return wrap("deregister service "+id, c.api.Agent().ServiceDeregisterOpts(id, c.query(ctx)))
}
