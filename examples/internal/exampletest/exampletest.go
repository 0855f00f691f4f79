// Package exampletest is what the examples' tests share: a real Consul agent,
// options fast enough for a test, an output the test can wait on, and a way
// to run an example until the test stops it.
package exampletest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/internal/devconsul"
	"go.uber.org/goleak"
)

// Timeout bounds every wait of a test.
const Timeout = 20 * time.Second

// leakGrace is how long Main lets goroutines end by themselves: protoactor
// keeps its dead-letter log throttle's goroutine for 1 s after a dead letter,
// longer than goleak waits on its own.
const leakGrace = 3 * time.Second

// Main runs the tests (call it from TestMain), then fails if goroutines are
// left over once leakGrace has passed.
func Main(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(leakGrace)
		for err := goleak.Find(); err != nil; err = goleak.Find() {
			if time.Now().After(deadline) {
				fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
				code = 1
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	os.Exit(code)
}

// Agent starts a Consul dev agent for t; it stops when t ends.
func Agent(t *testing.T) *devconsul.Agent {
	t.Helper()
	return devconsul.ForTest(t, devconsul.Config{})
}

var prefixes atomic.Int64

// Options are the defaults with a 2s session TTL, no lock-delay and a
// KeyPrefix no other test uses.
func Options(t *testing.T, agent *devconsul.Agent) actors.Options {
	opts := actors.DefaultOptions()
	opts.ConsulAddress = agent.URL()
	opts.SessionTTL = 2 * time.Second
	opts.LockDelay = 0
	opts.KeyPrefix = fmt.Sprintf("examples/%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), prefixes.Add(1))
	return opts
}

// Output collects what an example prints; it is safe for concurrent use.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

// Lines returns the complete lines printed so far that contain any of subs
// (every line when subs is empty), in order.
func (o *Output) Lines(subs ...string) []string {
	o.mu.Lock()
	text := o.buf.String()
	o.mu.Unlock()
	var lines []string
	for _, line := range strings.SplitAfter(text, "\n") {
		if !strings.HasSuffix(line, "\n") {
			break // not complete yet
		}
		line = strings.TrimSuffix(line, "\n")
		for _, sub := range subs {
			if strings.Contains(line, sub) {
				lines = append(lines, line)
				break
			}
		}
		if len(subs) == 0 {
			lines = append(lines, line)
		}
	}
	return lines
}

// WaitFor waits until n lines contain sub and returns them.
func (o *Output) WaitFor(t *testing.T, sub string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		if lines := o.Lines(sub); len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %d lines with %q; output:\n%s", Timeout, n, sub, strings.Join(o.Lines(), "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Running is an example running in a goroutine.
type Running struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
	err    error
	ended  bool
}

// Run runs fn, as main would, until Stop (or the end of the test) cancels
// its context.
func Run(t *testing.T, fn func(ctx context.Context) error) *Running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- fn(ctx) }()
	t.Cleanup(func() { _ = r.Stop() })
	return r
}

// Stop cancels the example's context, as SIGINT would, and returns what it
// returned.
func (r *Running) Stop() error {
	r.t.Helper()
	r.cancel()
	return r.Wait()
}

// Wait waits for the example to return by itself.
func (r *Running) Wait() error {
	r.t.Helper()
	if r.ended {
		return r.err
	}
	select {
	case r.err = <-r.done:
		r.ended = true
		return r.err
	case <-time.After(Timeout):
		r.t.Fatalf("the example did not return within %s", Timeout)
		return nil
	}
}
