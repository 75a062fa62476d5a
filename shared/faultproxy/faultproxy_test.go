package faultproxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/faultproxy"
)

// echo serves a line echo on a port of its own.
func echo(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func roundTrip(c net.Conn, r *bufio.Reader, line string) error {
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return errors.New("echoed " + got)
	}
	return nil
}

// closedAfter writes line and reports whether the connection then ends
// (its reply may or may not come first), rather than staying open.
func closedAfter(t *testing.T, c net.Conn, r *bufio.Reader, line string) bool {
	t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return true
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := io.ReadAll(r)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestDownUp: while down, a connection is accepted and closed (the port
// stays the proxy's); after Up it relays again.
func TestDownUp(t *testing.T) {
	p := faultproxy.New(t, echo(t))
	c, r := dial(t, p.Addr())
	if err := roundTrip(c, r, "one"); err != nil {
		t.Fatal(err)
	}
	p.Down()
	if err := roundTrip(c, r, "two"); err == nil {
		t.Fatal("a connection survived Down")
	}
	c, r = dial(t, p.Addr())
	if err := roundTrip(c, r, "three"); err == nil {
		t.Fatal("a connection was served while down")
	}
	p.Up()
	c, r = dial(t, p.Addr())
	if err := roundTrip(c, r, "four"); err != nil {
		t.Fatal(err)
	}
}

// TestCutEvery: every second matching frame cuts, twice; other frames do
// not count.
func TestCutEvery(t *testing.T) {
	p := faultproxy.New(t, echo(t))
	p.CutEvery("chat", 2, 2)
	for round := range 3 {
		c, r := dial(t, p.Addr())
		for _, line := range []string{"chat 1", "ping", "ping"} {
			if err := roundTrip(c, r, line); err != nil {
				t.Fatalf("round %d %q: %v", round, line, err)
			}
		}
		if cut := closedAfter(t, c, r, "chat 2"); cut != (round < 2) {
			t.Fatalf("round %d: cut %v, want %v", round, cut, round < 2)
		}
	}
	if n := p.Taken(); n != 2 {
		t.Errorf("taken %d, want 2", n)
	}
}

// TestDropAfterFrame: the frame reaches the target, its connection is
// dropped, the proxy keeps serving.
func TestDropAfterFrame(t *testing.T) {
	p := faultproxy.New(t, echo(t))
	p.DropAfterFrame("lost")
	c, r := dial(t, p.Addr())
	if !closedAfter(t, c, r, "lost reply") {
		t.Fatal("the connection stayed open")
	}
	c, r = dial(t, p.Addr())
	if err := roundTrip(c, r, "lost again"); err != nil {
		t.Fatalf("the second frame was dropped too: %v", err)
	}
}
