package devconsul

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/consul"
)

// TestOperatorActsWithTheManagementToken: under default-deny ACLs, the
// operator reads and writes keys with their flags, sees and destroys
// sessions and drives a TTL check, and its errors are classified as
// package consul's are.
func TestOperatorActsWithTheManagementToken(t *testing.T) {
	t.Parallel()
	a := ForTest(t, Config{ACLDefaultDeny: true})
	op, ctx := a.Operator(), t.Context()

	const key = "operator/a key"
	if _, ok, err := op.Get(ctx, key); err != nil || ok {
		t.Fatalf("Get of a missing key: ok %v, %v; want not ok and no error", ok, err)
	}
	if err := op.Put(ctx, key, []byte("v"), 7); err != nil {
		t.Fatal(err)
	}
	if e, ok, err := op.Get(ctx, key); err != nil || !ok || e.Key != key || string(e.Value) != "v" || e.Flags != 7 || e.ModifyIndex == 0 {
		t.Fatalf("Get after Put: %+v, ok %v, %v", e, ok, err)
	}
	if err := op.Put(ctx, key, make([]byte, 512*1024+1), 0); !errors.Is(err, consul.ErrRejected) {
		t.Fatalf("Put over kv_max_value_size: %v; want ErrRejected", err)
	}
	if err := op.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := op.Get(ctx, key); err != nil || ok {
		t.Fatalf("Get after Delete: ok %v, %v", ok, err)
	}

	var created struct{ ID string }
	if err := a.call(ctx, http.MethodPut, "/v1/session/create", map[string]string{"Name": "op", "TTL": "10s", "LockDelay": "2s"}, &created); err != nil {
		t.Fatal(err)
	}
	info, err := op.SessionInfo(ctx, created.ID)
	if err != nil || info.ID != created.ID || info.Node != a.NodeName() || info.TTL != 10*time.Second || info.LockDelay != 2*time.Second {
		t.Fatalf("SessionInfo: %+v, %v", info, err)
	}
	for range 2 { // destroying a session that is gone succeeds
		if err := op.DestroySession(ctx, created.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := op.SessionInfo(ctx, created.ID); !errors.Is(err, consul.ErrSessionGone) {
		t.Fatalf("SessionInfo of a destroyed session: %v; want ErrSessionGone", err)
	}

	const check = "operator-check"
	if err := op.RegisterTTLCheck(ctx, check, "", time.Hour, "passing"); err != nil {
		t.Fatal(err)
	}
	if err := op.UpdateCheck(ctx, check, "critical", "down"); err != nil {
		t.Fatal(err)
	}
	var checks map[string]struct{ Status, Output string }
	if err := a.call(ctx, http.MethodGet, "/v1/agent/checks", nil, &checks); err != nil || checks[check].Status != "critical" || checks[check].Output != "down" {
		t.Fatalf("agent checks %+v (%v); want %s critical with output down", checks, err, check)
	}
	if err := op.DeregisterCheck(ctx, check); err != nil {
		t.Fatal(err)
	}
	checks = nil
	if err := a.call(ctx, http.MethodGet, "/v1/agent/checks", nil, &checks); err != nil {
		t.Fatal(err)
	}
	if _, ok := checks[check]; ok {
		t.Fatalf("%s is still registered", check)
	}
}
