package consul

import (
	"errors"
	"testing"
)

// TestErrorsAreClassifiedByTheirMeaningNotByDigitsInAName: Consul's answers
// name keys and sessions, which may hold "403" or "500" themselves.
func TestErrorsAreClassifiedByTheirMeaningNotByDigitsInAName(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want error
	}{
		{`failed to lock key "fleet/shard-04031", lock is already held`, ErrLockHeld},
		{`Unexpected response code: 403 (ACL not found)`, ErrPermissionDenied},
		{`Unexpected response code: 403 (Permission denied: token lacks key:write)`, ErrPermissionDenied},
		{`invalid session "5403ab"`, ErrSessionGone},
		{`Unexpected response code: 500 (No cluster leader) for key a/x-403`, nil},
	} {
		if got := kindOf(errors.New(tc.msg)); got != tc.want {
			t.Errorf("%q classified as %v; want %v", tc.msg, got, tc.want)
		}
	}
}
