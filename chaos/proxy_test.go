package chaos

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// echoServer answers each line with the same line, until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	conns := make(chan net.Conn, 16)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// roundTrip sends a line through addr and reads it back within bound.
func roundTrip(conn net.Conn, bound time.Duration) (time.Duration, error) {
	start := time.Now()
	_ = conn.SetDeadline(start.Add(bound))
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return 0, err
	}
	if line != "ping\n" {
		return 0, errors.New("got " + line)
	}
	return time.Since(start), nil
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestProxyForwardsCutsAndDelays(t *testing.T) {
	p, err := NewProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if !strings.HasPrefix(p.Addr(), "127.0.0.1:") {
		t.Fatalf("proxy on %s; want loopback", p.Addr())
	}
	conn := dial(t, p)
	if _, err := roundTrip(conn, 5*time.Second); err != nil {
		t.Fatalf("forwarding: %v", err)
	}

	p.SetLatency(150 * time.Millisecond)
	if took, err := roundTrip(conn, 5*time.Second); err != nil || took < 300*time.Millisecond {
		t.Fatalf("with 150ms each way, a round trip took %s (%v); want ≥ 300ms", took, err)
	}
	p.SetLatency(0)

	p.Cut(Refuse)
	if _, err := roundTrip(conn, 5*time.Second); err == nil {
		t.Fatal("a connection survived the cut")
	}
	// The reset may come before the dial has returned (a loaded machine).
	switch conn, err := net.Dial("tcp", p.Addr()); {
	case err == nil:
		defer conn.Close()
		if _, err := roundTrip(conn, 5*time.Second); err == nil || os.IsTimeout(err) {
			t.Fatalf("a new connection during a refusing cut: %v; want it reset at once", err)
		}
	case !errors.Is(err, syscall.ECONNRESET):
		t.Fatalf("dialling during a refusing cut: %v; want the connection reset", err)
	}
	p.Cut(Blackhole)
	held := dial(t, p)
	if _, err := roundTrip(held, 300*time.Millisecond); !os.IsTimeout(err) {
		t.Fatalf("a new connection during a blackholing cut: %v; want no answer", err)
	}
	p.Heal()
	if _, err := roundTrip(held, 5*time.Second); err == nil {
		t.Fatal("a blackholed connection outlived the cut")
	}
	if _, err := roundTrip(dial(t, p), 5*time.Second); err != nil {
		t.Fatalf("after healing: %v", err)
	}
}
