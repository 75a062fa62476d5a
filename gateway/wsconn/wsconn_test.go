package wsconn

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/natter-chat/natter/shared/wire"
)

// pair is a server-side Conn and the client's end of the same WebSocket.
func pair(t *testing.T, maxFrame int) (*Conn, *websocket.Conn) {
	t.Helper()
	conns := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		c := New(ws, Addr("local"), Addr(r.RemoteAddr), maxFrame)
		conns <- c
		<-c.Done()
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := <-conns
	t.Cleanup(func() {
		client.CloseNow()
		c.Close()
		<-c.Done()
	})
	return c, client
}

func send(t *testing.T, ws *websocket.Conn, typ websocket.MessageType, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.Write(ctx, typ, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

func TestMessagesAreFrames(t *testing.T) {
	c, client := pair(t, 1024)
	dec := wire.NewDecoder(c, 1024)
	for _, tc := range []struct{ name, msg, frame string }{
		{"one frame", `{"msgid":11}`, `{"msgid":11}`},
		{"no terminator needed", `{"msgid":11,"reqid":"a"}`, `{"msgid":11,"reqid":"a"}`},
		{"newline inside is not a terminator", "{\"msgid\":11}\n{\"msgid\":11}", "{\"msgid\":11}\x1a{\"msgid\":11}"},
		{"NUL inside is not a terminator", "{\"msgid\":6,\"msg\":\"a\x00b\"}", "{\"msgid\":6,\"msg\":\"a\x1ab\"}"},
		{"telnet CR dropped", "{\"msgid\":11}\r", `{"msgid":11}`},
		{"exactly the limit", `"` + strings.Repeat("x", 1022) + `"`, `"` + strings.Repeat("x", 1022) + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			send(t, client, websocket.MessageText, tc.msg)
			f, term, err := dec.Next()
			if err != nil {
				t.Fatal(err)
			}
			if string(f) != tc.frame || term != wire.TermNewline {
				t.Fatalf("frame %q term %q, want %q", f, term, tc.frame)
			}
		})
	}
	// A blank message is skipped like a blank line: the next one is read.
	send(t, client, websocket.MessageText, "  ")
	send(t, client, websocket.MessageText, `{"msgid":12}`)
	if f, _, err := dec.Next(); err != nil || string(f) != `{"msgid":12}` {
		t.Fatalf("after a blank message: %q %v", f, err)
	}
}

func TestSubstitutedFramesAreNotJSON(t *testing.T) {
	for _, f := range []string{"{\"msgid\":11}\x1a{\"msgid\":11}", "{\"msgid\":11\x1a}", "{\"msg\":\"a\x1ab\",\"msgid\":6}"} {
		if _, err := wire.Parse([]byte(f)); err == nil {
			t.Errorf("wire.Parse(%q) accepted it", f)
		}
	}
}

func TestOversizedMessage(t *testing.T) {
	c, client := pair(t, 1024)
	dec := wire.NewDecoder(c, 1024)
	send(t, client, websocket.MessageText, `"`+strings.Repeat("x", 1023)+`"`)
	if _, _, err := dec.Next(); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("got %v, want wire.ErrFrameTooLarge", err)
	}
}

func TestBinaryMessageRefused(t *testing.T) {
	c, client := pair(t, 1024)
	send(t, client, websocket.MessageBinary, `{"msgid":11}`)
	_, err := c.Read(make([]byte, 64))
	var rf interface{ Refusal() (wire.Errno, string) }
	if !errors.As(err, &rf) {
		t.Fatalf("read: %v, want a refusal", err)
	}
	if errno, _ := rf.Refusal(); errno != wire.BadJSON {
		t.Fatalf("errno %d", errno)
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err = client.Read(ctx)
	if s := websocket.CloseStatus(err); s != websocket.StatusUnsupportedData {
		t.Fatalf("client read: %v (status %d), want close 1003", err, s)
	}
}

func TestWriteSendsOneMessagePerFrame(t *testing.T) {
	c, client := pair(t, 1024)
	if _, err := c.Write([]byte("{\"msgid\":12}\n{\"msgid\":14}\x00{\"msgid\"")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(":2}\n\n")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, want := range []string{`{"msgid":12}`, `{"msgid":14}`, `{"msgid":2}`} {
		typ, b, err := client.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ != websocket.MessageText || string(b) != want {
			t.Fatalf("got %v %q, want text %q", typ, b, want)
		}
	}
}

func TestReadDeadline(t *testing.T) {
	c, _ := pair(t, 1024)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 64))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want os.ErrDeadlineExceeded", err)
	}
}

func TestClientCloseIsEOF(t *testing.T) {
	c, client := pair(t, 1024)
	go client.Close(websocket.StatusNormalClosure, "")
	if _, err := c.Read(make([]byte, 64)); !errors.Is(err, io.EOF) {
		t.Fatalf("read: %v, want io.EOF", err)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	c, client := pair(t, 1024)
	// The client reads, so it answers the close handshake.
	go client.Read(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 64)); errc <- err }()
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read still blocked after Close")
	}
	<-c.Done()
	if _, err := c.Write([]byte("{}\n")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

func TestDialedClient(t *testing.T) {
	conns := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		c := New(ws, Addr("local"), Addr(r.RemoteAddr), 1024)
		conns <- c
		<-c.Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, err := Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	server := <-conns
	defer func() {
		client.Close()
		server.Close()
		<-client.Done()
		<-server.Done()
	}()

	// Frames written by either side arrive as frames on the other.
	if _, err := client.Write([]byte("{\"msgid\":11}\n{\"msgid\":11,\"reqid\":2}\n")); err != nil {
		t.Fatal(err)
	}
	dec := wire.NewDecoder(server, 1024)
	for _, want := range []string{`{"msgid":11}`, `{"msgid":11,"reqid":2}`} {
		if f, _, err := dec.Next(); err != nil || string(f) != want {
			t.Fatalf("server read %q %v, want %q", f, err, want)
		}
	}

	// An expired read deadline fails that read only, as on TCP.
	client.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if _, err := client.Read(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client read: %v, want os.ErrDeadlineExceeded", err)
	}
	client.SetReadDeadline(time.Time{})
	if _, err := server.Write([]byte("{\"msgid\":12}\n")); err != nil {
		t.Fatal(err)
	}
	cdec := wire.NewDecoder(client, 1024)
	if f, _, err := cdec.Next(); err != nil || string(f) != `{"msgid":12}` {
		t.Fatalf("client read %q %v after a timeout", f, err)
	}

	// A deadline moved into the past wakes a Read waiting without one.
	errc := make(chan error, 1)
	go func() { _, err := client.Read(make([]byte, 64)); errc <- err }()
	time.Sleep(20 * time.Millisecond) // let the Read wait; it returns either way
	client.SetReadDeadline(time.Unix(1, 0))
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("client read: %v, want os.ErrDeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a Read waiting without a deadline ignored a new one")
	}
	client.SetReadDeadline(time.Time{})

	// The server closing ends the client's stream.
	server.Close()
	if _, _, err := cdec.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("client read after the server closed: %v", err)
	}
}
