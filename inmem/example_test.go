package inmem_test

import (
	"context"
	"fmt"
	"time"

	consulelect "github.com/excalibur/consul-elect"
	"github.com/excalibur/consul-elect/inmem"
)

// The engine on an in-memory store: no Consul needed.
func Example() {
	store := inmem.New()
	defer store.Close()

	opts := consulelect.DefaultOptions()
	opts.Backend = store
	opts.CandidateID = "alpha"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := consulelect.Start(ctx, opts)
	if err != nil {
		panic(err)
	}
	defer e.Stop(context.Background())

	_ = e.Campaign("order-processor", nil)
	lead, err := e.AwaitLeadership(ctx, "order-processor")
	if err != nil {
		panic(err)
	}
	entry, _, _ := store.Get(ctx, opts.KeyPrefix+"/order-processor")
	fmt.Println("leader:", entry.Session == lead.Session, "fencing token is the key's index:", lead.FencingToken == entry.ModifyIndex)
	// Output: leader: true fencing token is the key's index: true
}
