package consul

import (
	"context"
	"time"

	"github.com/hashicorp/consul/api"
)

// Service is a service instance on the local agent with a TTL check that its
// owner keeps passing: a candidate's fast-failover check, or its instance of
// a service that routes clients to the leader.
type Service struct {
	ID, Name string
	Tags     []string
	Meta     map[string]string
	Address  string // empty: the agent's
	Port     int
	CheckID  string
	CheckTTL time.Duration
}

// serviceReapAfter is when Consul removes the instance of a candidate that
// died without deregistering it (its check critical that long). Consul's
// minimum is one minute.
const serviceReapAfter = time.Minute

// RegisterService registers (again) svc with its TTL check, passing, and
// replaces its tags and meta. The instance of a killed candidate goes
// critical within CheckTTL and is reaped a minute later, so it leaves nothing
// behind; a session bound to the check through ServiceChecks is invalidated
// when it goes critical (fast failover).
func (c *Client) RegisterService(ctx context.Context, svc Service) error {
	reg := &api.AgentServiceRegistration{
		ID: svc.ID, Name: svc.Name, Tags: svc.Tags, Meta: svc.Meta, Address: svc.Address, Port: svc.Port,
		Check: &api.AgentServiceCheck{
			CheckID: svc.CheckID, Name: svc.Name + " candidate alive", TTL: svc.CheckTTL.String(),
			Status: api.HealthPassing, DeregisterCriticalServiceAfter: serviceReapAfter.String(),
		},
	}
	opts := api.ServiceRegisterOpts{}.WithContext(ctx)
	return wrap("register service "+svc.ID, c.api.Agent().ServiceRegisterOpts(reg, opts))
}
