package consulelect

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/excalibur/consul-elect/inmem"
)

// TestShrinkRegistryKeepsEveryActorFindable: the actors registered before
// the shrink (the dead letters and the event stream) are found where
// protoactor now looks for them, and those spawned after it answer.
func TestShrinkRegistryKeepsEveryActorFindable(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	shrinkRegistry(system)
	if n := len(system.ProcessRegistry.LocalPIDs.LocalPIDs); n != registryBuckets {
		t.Fatalf("%d buckets, want %d", n, registryBuckets)
	}
	for _, id := range []string{"eventstream", "deadletter"} {
		if _, ok := system.ProcessRegistry.GetLocal(id); !ok {
			t.Errorf("%s is not found after the shrink", id)
		}
	}

	props := actor.PropsFromFunc(func(c actor.Context) {
		if _, ok := c.Message().(string); ok {
			c.Respond(c.Self().Id)
		}
	})
	var pids []*actor.PID
	for i := range 500 {
		pid, err := system.Root.SpawnNamed(props, fmt.Sprintf("a-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		got, err := system.Root.RequestFuture(pid, "ping", 5*time.Second).Result()
		if err != nil || got != pid.Id {
			t.Fatalf("%s answered %v, %v", pid.Id, got, err)
		}
	}
	for _, pid := range pids {
		if err := system.Root.StopFuture(pid).Wait(); err != nil {
			t.Fatal(err)
		}
		if _, ok := system.ProcessRegistry.GetLocal(pid.Id); ok {
			t.Fatalf("%s is still registered after it stopped", pid.Id)
		}
	}
}

// TestStartShrinksTheRegistryOfItsActorSystem: an Election's actor system
// has the small registry, and the engine works in it.
func TestStartShrinksTheRegistryOfItsActorSystem(t *testing.T) {
	store := inmem.New()
	defer store.Close()
	opts := DefaultOptions()
	opts.Backend, opts.CandidateID, opts.LockDelay = store, "alpha", 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop(context.Background())
	if n := len(e.system.ProcessRegistry.LocalPIDs.LocalPIDs); n != registryBuckets {
		t.Errorf("the Election's actor system has %d buckets, want %d", n, registryBuckets)
	}
	for i := range 20 {
		resource := fmt.Sprintf("r-%d", i)
		if err := e.Campaign(resource, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := e.AwaitLeadership(ctx, resource); err != nil {
			t.Fatalf("%s: %v", resource, err)
		}
	}
}
