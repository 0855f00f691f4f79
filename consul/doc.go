// Package consul is the only part of consul-elect that talks to Consul. It
// turns every HTTP answer into a typed result or a classified error
// (ErrSessionGone, ErrLockHeld, ErrLockDelay, ErrPermissionDenied, …) that
// callers test with errors.Is. Actors decide; this package talks.
//
// A Client keeps within a budget of requests in flight to its agent
// (Config.MaxConnections), in which long polls can never take the slots that
// renewals and writes need, and it batches concurrent acquires and releases
// into transactions as long as the agent's version allows, riding out 429 and
// 5xx answers to them until their contexts end.
package consul
