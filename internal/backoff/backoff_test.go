package backoff_test

import (
	"testing"
	"time"

	"github.com/excalibur/consul-elect/internal/backoff"
)

func TestWaitsDoubleUpToTheCapWithJitter(t *testing.T) {
	b := backoff.New(100*time.Millisecond, time.Second)
	for i, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		want *= time.Millisecond
		got := b.Next()
		if got < want-want/10 || got > want+want/10 {
			t.Fatalf("wait %d is %s; want %s ± 10%%", i, got, want)
		}
	}
	if b.Failures() != 6 {
		t.Fatalf("Failures = %d; want 6", b.Failures())
	}
	b.Reset()
	if got := b.Next(); got > 110*time.Millisecond {
		t.Fatalf("after Reset the wait is %s; want about the base", got)
	}
	if got := backoff.Delay(time.Second, 10*time.Second, 62); got != 10*time.Second {
		t.Fatalf("a huge attempt gives %s; want the cap", got)
	}
}
