package netconn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// echo is a Handler that answers each frame with "re:<frame>" after an
// optional delay (on a goroutine, as the session answers requests), and
// records what happened.
type echo struct {
	delay time.Duration

	mu       sync.Mutex
	frames   []string
	refused  error
	readEnd  error
	end      *End
	inflight sync.WaitGroup
	ended    chan struct{}
}

func newEcho(delay time.Duration) *echo { return &echo{delay: delay, ended: make(chan struct{})} }

func (e *echo) Frame(c *Conn, f []byte, term byte) {
	s := string(f)
	e.mu.Lock()
	e.frames = append(e.frames, s)
	e.mu.Unlock()
	reply := []byte("re:" + s + string(term))
	if e.delay == 0 {
		c.Send(reply)
		return
	}
	e.inflight.Add(1)
	go func() {
		defer e.inflight.Done()
		time.Sleep(e.delay)
		c.Send(reply)
	}()
}

func (e *echo) Refused(c *Conn, err error) {
	e.mu.Lock()
	e.refused = err
	e.mu.Unlock()
	c.SendLast([]byte("refused\n"))
}

func (e *echo) ReadEnded(c *Conn, err error) bool {
	e.mu.Lock()
	e.readEnd = err
	e.mu.Unlock()
	if c.Closing() {
		return true
	}
	go func() {
		e.inflight.Wait()
		c.SendLast(nil)
	}()
	return true
}

func (e *echo) Closed(c *Conn, end End) {
	e.mu.Lock()
	e.end = &end
	e.mu.Unlock()
	close(e.ended)
}

func (e *echo) waitEnd(t *testing.T) End {
	t.Helper()
	select {
	case <-e.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection did not end")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return *e.end
}

func testOptions() Options {
	return Options{MaxFrame: 1024, WriteLimit: 64 << 10, WriteTimeout: 2 * time.Second, LegacyGap: 0}
}

func testLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// dialTCP connects to addr; the connection is closed with the test.
func dialTCP(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// server starts a transport ("loop" or "stream") on a loopback listener and
// serves every accepted connection with the handler h returns.
func server(t *testing.T, kind string, opts Options, h func() Handler) (addr string, conns chan *Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = make(chan *Conn, 16)
	var loop *Loop
	if kind == "loop" {
		if loop, err = NewLoop(opts, 2, testLog()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { loop.Stop() })
	}
	stream := NewStream(opts, testLog())
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mk := func(c *Conn) Handler { conns <- c; return h() }
			if loop != nil {
				if err := loop.Serve(nc, mk); err != nil {
					t.Error(err)
				}
			} else {
				go stream.Serve(nc, mk)
			}
		}
	}()
	return ln.Addr().String(), conns
}

func forEachTransport(t *testing.T, fn func(t *testing.T, kind string)) {
	for _, kind := range []string{"loop", "stream"} {
		t.Run(kind, func(t *testing.T) { fn(t, kind) })
	}
}

// TestFramesInOrder: frames split across reads and several in one read
// reach the handler in order; answers are written; a half-closing client
// gets the answers to everything it sent before the connection closes.
func TestFramesInOrder(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind string) {
		for _, delay := range []time.Duration{0, 30 * time.Millisecond} {
			h := newEcho(delay)
			addr, _ := server(t, kind, testOptions(), func() Handler { return h })
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			in := "{\"a\":1}\n\n  \r\n{\"b\":2}\r\n{\"c\"" // blank frames skipped, \r dropped
			c.Write([]byte(in))
			time.Sleep(20 * time.Millisecond)
			c.Write([]byte(":3}\x00{\"d\":4}")) // the last one unterminated: a frame at the end
			c.(*net.TCPConn).CloseWrite()
			got, _ := io.ReadAll(c)
			want := "re:{\"a\":1}\nre:{\"b\":2}\nre:{\"c\":3}\x00re:{\"d\":4}\n"
			if delay == 0 && string(got) != want {
				t.Fatalf("delay %s: got %q, want %q", delay, got, want)
			}
			if delay > 0 && len(got) != len(want) { // async answers may come in any order
				t.Fatalf("delay %s: got %q", delay, got)
			}
			end := h.waitEnd(t)
			if end.Reason != ReasonEOF {
				t.Fatalf("reason %s", end.Reason)
			}
			h.mu.Lock()
			if fmt.Sprint(h.frames) != `[{"a":1} {"b":2} {"c":3} {"d":4}]` {
				t.Fatalf("frames %q", h.frames)
			}
			h.mu.Unlock()
			c.Close()
		}
	})
}

// TestFrameTooLarge: a frame over MaxFrame is refused and the connection
// closed after the refusal's answer.
func TestFrameTooLarge(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind string) {
		h := newEcho(0)
		addr, _ := server(t, kind, testOptions(), func() Handler { return h })
		c := dialTCP(t, addr)
		c.Write([]byte("{\"ok\":1}\n" + strings.Repeat("x", 3000)))
		got, _ := io.ReadAll(c)
		if string(got) != "re:{\"ok\":1}\nrefused\n" {
			t.Fatalf("got %q", got)
		}
		if end := h.waitEnd(t); end.Reason != ReasonFrameTooLarge || !errors.Is(h.refused, ErrFrameTooLarge) {
			t.Fatalf("end %+v refused %v", end, h.refused)
		}
	})
}

// TestSlowClient: a client that reads nothing is cut off once its queue
// passes WriteLimit bytes; what it pinned stays bounded.
func TestSlowClient(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind string) {
		opts := testOptions()
		opts.WriteLimit = 32 << 10
		h := newEcho(0)
		addr, conns := server(t, kind, opts, func() Handler { return h })
		c := dialTCP(t, addr)
		c.SetReadBuffer(4 << 10)
		sc := <-conns
		frame := bytes.Repeat([]byte("y"), 1000)
		sent := 0
		for i := 0; i < 100000 && sc.Send(append(frame[:len(frame):len(frame)], '\n')); i++ {
			sent++
			if q := sc.Queued(); q > opts.WriteLimit+len(frame)+1 {
				t.Fatalf("queued %d bytes, limit %d", q, opts.WriteLimit)
			}
			if i%64 == 0 {
				time.Sleep(time.Millisecond) // let the transport write
			}
		}
		if end := h.waitEnd(t); end.Reason != ReasonSlowClient {
			t.Fatalf("reason %s after %d frames", end.Reason, sent)
		}
	})
}

// TestWriteCoalesced: frames sent while the handler runs go out together,
// in order.
func TestWriteCoalesced(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind string) {
		h := newEcho(0)
		addr, conns := server(t, kind, testOptions(), func() Handler { return h })
		c := dialTCP(t, addr)
		sc := <-conns
		for i := range 200 {
			sc.Send([]byte(fmt.Sprintf("%d\n", i)))
		}
		r := bufio.NewReader(c)
		for i := range 200 {
			line, err := r.ReadString('\n')
			if err != nil || line != fmt.Sprintf("%d\n", i) {
				t.Fatalf("line %d: %q %v", i, line, err)
			}
		}
	})
}

// TestIdleSweep: Sweep closes a connection idle for IdleTimeout.
func TestIdleSweep(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind string) {
		opts := testOptions()
		opts.IdleTimeout = 50 * time.Millisecond
		h := newEcho(0)
		addr, conns := server(t, kind, opts, func() Handler { return h })
		dialTCP(t, addr)
		sc := <-conns
		sc.Sweep(time.Now())
		if sc.Closing() {
			t.Fatal("closed before the idle timeout")
		}
		sc.Sweep(time.Now().Add(time.Second))
		if end := h.waitEnd(t); end.Reason != ReasonIdle {
			t.Fatalf("reason %s", end.Reason)
		}
	})
}

// TestSplitFrames covers the framing rules on their own.
func TestSplitFrames(t *testing.T) {
	var got []string
	used, err := splitFrames([]byte("a\nb\r\n \n\x00c\x00d"), 10, func(f []byte, term byte) bool {
		got = append(got, fmt.Sprintf("%s/%d", f, term))
		return true
	})
	if err != nil || used != 10 || fmt.Sprint(got) != "[a/10 b/10 c/0]" {
		t.Fatalf("used %d err %v frames %v", used, err, got)
	}
	if _, err := splitFrames([]byte(strings.Repeat("x", 11)), 10, func([]byte, byte) bool { return true }); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("unterminated long frame: %v", err)
	}
	if _, err := splitFrames([]byte(strings.Repeat("x", 11)+"\n"), 10, func([]byte, byte) bool { return true }); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("terminated long frame: %v", err)
	}
}

// legacyRead reads like the original client: one read of up to 1024
// bytes, the frame up to the first NUL; it reports the frame and whether
// anything but NUL filler followed it in that read (a lost frame).
func legacyRead(t *testing.T, c net.Conn) (frame string, junk bool, err error) {
	t.Helper()
	buf := make([]byte, RecordSize)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		return "", false, err
	}
	f, rest, _ := bytes.Cut(buf[:n], []byte{0})
	return string(f), len(bytes.Trim(rest, "\x00")) > 0, nil
}

// TestRecords: in records mode frames that pile up while the client reads
// nothing are each read alone by a 1024-byte read; a clean close confirms
// them, a reset confirms nothing; a last frame half-closes and the
// client's close confirms.
func TestRecords(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind string) {
		for _, end := range []string{"close", "reset", "server"} {
			t.Run(end, func(t *testing.T) {
				h := newEcho(0)
				addr, conns := server(t, kind, testOptions(), func() Handler { return h })
				c := dialTCP(t, addr)
				sc := <-conns
				sc.SetRecords(true)
				if !sc.Records() {
					t.Fatal("records mode refused on TCP")
				}
				for i := 1; i <= 30; i++ {
					sc.SendMarked([]byte(fmt.Sprintf("{\"n\":%d}\x00", i)), 7, int64(i))
				}
				time.Sleep(200 * time.Millisecond) // they pile up unread
				if end == "reset" {
					c.SetLinger(0)
					c.Close()
					if e := h.waitEnd(t); e.Confirmed[7] != 0 || !e.Unconfirmed {
						t.Fatalf("after a reset: %+v", e)
					}
					return
				}
				for i := 1; i <= 30; i++ {
					f, junk, err := legacyRead(t, c)
					if err != nil || junk || f != fmt.Sprintf("{\"n\":%d}", i) {
						t.Fatalf("read %d: %q junk=%v err=%v", i, f, junk, err)
					}
				}
				if end == "server" {
					sc.SendLast([]byte("{\"bye\":1}\x00"))
					if f, _, _ := legacyRead(t, c); f != "{\"bye\":1}" {
						t.Fatalf("last frame %q", f)
					}
					if _, _, err := legacyRead(t, c); !errors.Is(err, io.EOF) {
						t.Fatalf("after the last frame: %v, want EOF (half-closed)", err)
					}
				}
				c.Close()
				if e := h.waitEnd(t); e.Confirmed[7] != 30 || e.Unconfirmed {
					t.Fatalf("after a clean close: %+v", e)
				}
			})
		}
	})
}

// pauser pauses its connection after every 10th frame and resumes it a
// little later from another goroutine, as the session does when its chat
// queue fills and drains.
type pauser struct {
	echo
}

func (p *pauser) Frame(c *Conn, f []byte, term byte) {
	p.echo.Frame(c, f, term)
	p.mu.Lock()
	n := len(p.frames)
	p.mu.Unlock()
	if n%10 == 0 {
		c.Pause()
		go func() {
			time.Sleep(5 * time.Millisecond)
			c.Resume()
		}()
	}
}

// TestPauseResume: frames that came while the handler had paused the
// connection are handed over, in order, once it resumes.
func TestPauseResume(t *testing.T) {
	forEachTransport(t, func(t *testing.T, kind string) {
		h := &pauser{echo: *newEcho(0)}
		addr, _ := server(t, kind, testOptions(), func() Handler { return h })
		c := dialTCP(t, addr)
		var all strings.Builder
		for i := range 200 {
			fmt.Fprintf(&all, "%d\n", i)
		}
		c.Write([]byte(all.String())) // at once: most wait while paused
		r := bufio.NewReader(c)
		for i := range 200 {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err := r.ReadString('\n')
			if err != nil || line != fmt.Sprintf("re:%d\n", i) {
				t.Fatalf("answer %d: %q %v", i, line, err)
			}
		}
	})
}
