// Package consul is the only part of consul-elect that talks to Consul. It
// turns every HTTP answer into a typed result or a classified error
// (ErrSessionGone, ErrLockHeld, ErrLockDelay, ErrPermissionDenied, …) that
// callers test with errors.Is. Actors decide; this package talks.
package consul
