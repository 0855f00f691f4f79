package consul

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/hashicorp/consul/api"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrSessionGone: the session does not exist (any more).
	ErrSessionGone = errors.New("session not found")
	// ErrLockHeld: another session holds the key.
	ErrLockHeld = errors.New("lock is held by another session")
	// ErrLockLost: a guarded write was refused because the leadership it
	// names no longer holds the lock.
	ErrLockLost = errors.New("the lock is no longer held by this leadership")
	// ErrLockDelay: the key was held by a session that was invalidated less
	// than its lock-delay ago; Consul refuses to lock it until then.
	ErrLockDelay = errors.New("key is in lock-delay")
	// ErrPermissionDenied: the ACL token does not allow the request.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrConflict: the key at the lock's path is not a consul-elect key
	// (other flags): something else uses it.
	ErrConflict = errors.New("key is used by something other than consul-elect")
	// ErrTransferRefused: a transfer found its successor gone; the key is
	// still held by the session that tried to hand it over.
	ErrTransferRefused = errors.New("the successor no longer takes the key")
	// ErrRejected: Consul refused the request as invalid (HTTP 400/413).
	ErrRejected = errors.New("rejected by Consul")
)

// Error is what every call of this package returns on failure: the operation,
// the classified kind (one of the sentinels above, or nil when the error is
// transient: network, 5xx, 429) and Consul's own error.
type Error struct {
	Op   string
	Kind error
	Err  error
}

func (e *Error) Error() string {
	if e.Kind != nil && !strings.Contains(e.Err.Error(), e.Kind.Error()) {
		return fmt.Sprintf("consul: %s: %v: %v", e.Op, e.Kind, e.Err)
	}
	return fmt.Sprintf("consul: %s: %v", e.Op, e.Err)
}

func (e *Error) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Err}
	}
	return []error{e.Kind, e.Err}
}

// Retryable reports whether retrying err later may succeed: network errors,
// timeouts, 5xx and 429, a held key or lock-delay. Permission denied,
// rejected requests and conflicts need a person to act first.
func Retryable(err error) bool {
	return err != nil &&
		!errors.Is(err, ErrPermissionDenied) &&
		!errors.Is(err, ErrRejected) &&
		!errors.Is(err, ErrConflict) &&
		!errors.Is(err, ErrLockLost) &&
		!errors.Is(err, context.Canceled)
}

// wrap classifies err, returned by api for operation op.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, Kind: kindOf(err), Err: err}
}

func kindOf(err error) error {
	var status api.StatusError
	if errors.As(err, &status) {
		switch status.Code {
		case http.StatusForbidden:
			return ErrPermissionDenied
		case http.StatusNotFound:
			return nil // callers that expect 404 handle it before wrapping
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			return ErrRejected
		}
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return nil
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "permission denied"), strings.Contains(msg, "acl not found"),
		strings.Contains(msg, "unexpected response code: 403"): // a key or id may hold "403" too
		return ErrPermissionDenied
	case strings.Contains(msg, "due to lock delay"):
		return ErrLockDelay
	case strings.Contains(msg, "lock is already held"):
		return ErrLockHeld
	case strings.Contains(msg, "invalid session"), strings.Contains(msg, "session not found"):
		return ErrSessionGone
	case strings.Contains(msg, "unexpected response code: 400"), strings.Contains(msg, "too many operations"),
		strings.Contains(msg, "request body(") && strings.Contains(msg, "too large"), // txn_max_req_len
		strings.Contains(msg, "unexpected response code: 413"):
		return ErrRejected
	}
	return nil
}
