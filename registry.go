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

// shrinkRegistry keeps the first registryBuckets of system's buckets and
// moves the actors of the others (its dead letters and event stream, say)
// into them. protoactor finds an actor's bucket by its id's hash modulo the
// number of buckets, and 1,024 is a multiple of 64: an actor in a kept
// bucket is already where it will be looked for. It must run before
// anything is spawned in system: the registry has no lock of its own.
func shrinkRegistry(system *actor.ActorSystem) {
	pids := system.ProcessRegistry.LocalPIDs
	buckets := pids.LocalPIDs
	if len(buckets) <= registryBuckets || len(buckets)%registryBuckets != 0 {
		return
	}
	pids.LocalPIDs = slices.Clone(buckets[:registryBuckets])
	for _, bucket := range buckets[registryBuckets:] {
		bucket.IterCb(func(id string, process any) { pids.GetBucket(id).Set(id, process) })
	}
}
