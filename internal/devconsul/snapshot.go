package devconsul

import (
	"context"
	"fmt"
	"net/http"
)

// Snapshot saves the agent's datacenter state (KV, sessions, catalog, ACLs)
// as Consul's snapshot API does (GET /v1/snapshot): a gzipped archive that
// Restore takes back.
func (a *Agent) Snapshot(ctx context.Context) ([]byte, error) {
	status, data, err := a.send(ctx, http.MethodGet, "/v1/snapshot", nil)
	if err != nil {
		return nil, fmt.Errorf("devconsul: snapshot: %w", err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("devconsul: snapshot: %w", statusError(http.MethodGet, "/v1/snapshot", status, data))
	}
	return data, nil
}

// Restore replaces the datacenter's state with snapshot (PUT /v1/snapshot),
// as an operator recovering from a backup does. Everything written since
// the snapshot was taken is gone (sessions and locks are the snapshot's),
// and the indexes that listings report go back to the snapshot's, while new
// writes still get raft indexes above every earlier one. Blocking queries in
// flight answer at once with the index they waited at; see
// TestRestoreTakesIndexesBackButNotNewWrites.
func (a *Agent) Restore(ctx context.Context, snapshot []byte) error {
	status, data, err := a.send(ctx, http.MethodPut, "/v1/snapshot", snapshot)
	if err != nil {
		return fmt.Errorf("devconsul: restore: %w", err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("devconsul: restore: %w", statusError(http.MethodPut, "/v1/snapshot", status, data))
	}
	return nil
}
