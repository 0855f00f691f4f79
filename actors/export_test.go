package actors

import (
	"testing"
	"time"
)

// SetRegistryPruneAfter shortens how long a gone candidate's registry entry
// stays, for one test (whose candidates must be stopped by its end).
func SetRegistryPruneAfter(t *testing.T, d time.Duration) {
	old := registryPruneAfter
	registryPruneAfter = d
	t.Cleanup(func() { registryPruneAfter = old })
}
