package consulelect

import (
	"slices"

	"github.com/asynkron/protoactor-go/actor"
)

// registryBuckets is how many buckets an Election's actor system keeps its
// actors in. protoactor starts every system with 1,024 buckets of 32 locked
// maps each: 32,768 maps, about 2.8 MB live before the first actor, which
// every garbage collection of the process marks. An engine with 10,000
// resources runs about 10,000 actors; 64 buckets (2,048 maps) still spread
// them over more locks than there are cores.
const registryBuckets = 64

// shrinkRegistry gives system's process registry registryBuckets buckets,
// the actors it already has (its dead letters and event stream) moved
// across. protoactor finds an actor's bucket by its id's hash modulo the
// number of buckets. It must run before anything is spawned in system: the
// registry has no lock of its own.
func shrinkRegistry(system *actor.ActorSystem) {
	pids := system.ProcessRegistry.LocalPIDs
	if len(pids.LocalPIDs) <= registryBuckets {
		return
	}
	type registered struct {
		id      string
		process any
	}
	var moved []registered
	for _, bucket := range pids.LocalPIDs {
		bucket.IterCb(func(id string, process any) { moved = append(moved, registered{id, process}) })
	}
	kept := slices.Clone(pids.LocalPIDs[:registryBuckets])
	for _, r := range moved {
		for _, bucket := range kept {
			bucket.Remove(r.id)
		}
	}
	pids.LocalPIDs = kept
	for _, r := range moved {
		pids.GetBucket(r.id).Set(r.id, r.process)
	}
}
