package reference_test

import (
	"context"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/consul/reference"
	"github.com/excalibur/consul-elect/internal/devconsul"
)

func newClient(t *testing.T, agent *devconsul.Agent) *reference.Client {
	t.Helper()
	c, err := reference.NewClient(reference.Config{Address: agent.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestStandbyTakesOverWhenTheHolderUnlocks(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	const key = "reference/handover"
	a, b := newClient(t, agent), newClient(t, agent)
	lockA, err := a.NewLock(reference.LockOptions{Key: key, SessionTTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	heldA, err := lockA.Lock(nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.LocksHeld() != 1 {
		t.Fatalf("LocksHeld = %d after Lock; want 1", a.LocksHeld())
	}
	lockB, err := b.NewLock(reference.LockOptions{Key: key, SessionTTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := lockB.Lock(nil)
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("b locked a held key: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := lockA.Unlock(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b did not take over after a unlocked")
	}
	select {
	case <-heldA:
	case <-time.After(10 * time.Second):
		t.Fatal("a's holding did not end")
	}
	if a.LocksHeld() != 0 || b.LocksHeld() != 1 {
		t.Fatalf("LocksHeld: a %d, b %d; want 0 and 1", a.LocksHeld(), b.LocksHeld())
	}
}

func TestCloseEndsAWaitingLock(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	const key = "reference/close"
	holder := newClient(t, agent)
	lock, err := holder.NewLock(reference.LockOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Lock(nil); err != nil {
		t.Fatal(err)
	}
	waiter, err := reference.NewClient(reference.Config{Address: agent.URL()})
	if err != nil {
		t.Fatal(err)
	}
	waiting, err := waiter.NewLock(reference.LockOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := waiting.Lock(nil)
		got <- err
	}()
	time.Sleep(200 * time.Millisecond) // in its blocking query by now
	waiter.Close()
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("Lock succeeded on a held key")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the waiting Lock")
	}
}

func TestZeroLockDelayIsTheLeastAPILockCanAskFor(t *testing.T) {
	agent := devconsul.ForTest(t, devconsul.Config{})
	const key = "reference/lock-delay"
	c := newClient(t, agent)
	lock, err := c.NewLock(reference.LockOptions{Key: key, LockDelay: 0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Lock(nil); err != nil {
		t.Fatal(err)
	}
	session, _, err := c.Holder(key)
	if err != nil || session == "" {
		t.Fatalf("Holder = %q, %v", session, err)
	}
	operator, err := consul.NewClient(consul.Config{Address: agent.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer operator.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := operator.SessionInfo(ctx, session)
	if err != nil {
		t.Fatal(err)
	}
	if info.LockDelay != reference.MinLockDelay {
		t.Fatalf("session lock-delay is %s; want %s", info.LockDelay, reference.MinLockDelay)
	}
}
