package loadgen

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// leanPair returns a leanConn and a function that writes to it from the
// server's end (in a goroutine: a pipe write waits for the reader).
func leanPair(t *testing.T) (*leanConn, func(pieces ...string)) {
	t.Helper()
	client, server := net.Pipe()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		client.Close()
		server.Close()
		wg.Wait()
	})
	write := func(pieces ...string) {
		wg.Go(func() {
			for _, p := range pieces {
				if _, err := server.Write([]byte(p)); err != nil {
					return
				}
			}
		})
	}
	return &leanConn{nc: client}, write
}

func TestLeanReadFrame(t *testing.T) {
	c, write := leanPair(t)
	// What the server writes, in these pieces; the frames read must come out.
	pieces := []string{
		`{"a":1}` + "\n" + `{"b":2}` + "\n",
		"\n\r\n", `{"c"`, `:3}` + "\r\n",
		`{"d":4}` + "\x00" + `{"e":`, `5}` + "\n",
	}
	want := []string{`{"a":1}`, `{"b":2}`, `{"c":3}`, `{"d":4}`, `{"e":5}`}
	write(pieces...)
	s := &scratch{} // no buffer yet: readFrame makes one
	for _, w := range want {
		c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := c.readFrame(s)
		if err != nil || string(f) != w {
			t.Fatalf("readFrame = %q, %v; want %q", f, err, w)
		}
	}
}

func TestLeanReply(t *testing.T) {
	c, write := leanPair(t)
	s := newScratch()
	tests := []struct {
		name   string
		id     int64  // the request's reqid
		server string // the frames before (and including) the answer
		errno  int
		err    error
	}{
		{"answer", 1, `{"msgid":12,"reqid":1}` + "\n", 0, nil},
		{"a late answer and a push first", 2, `{"msgid":12,"reqid":1}` + "\n" +
			`{"msgid":16,"id":3,"state":"online"}` + "\n" + `{"msgid":12,"reqid":2}` + "\n", 0, nil},
		{"error without reqid", 3, `{"errno":109,"errmsg":"too many frames","msgid":14,"re":11}` + "\n", 109, nil},
		{"error with reqid", 4, `{"errno":1,"errmsg":"no","msgid":2,"reqid":4}` + "\n", 1, nil},
		{"no answer in time", 5, "", 0, errTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.id
			if tt.server != "" {
				write(tt.server)
			}
			c.nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			f, err := c.reply(s, id)
			var re *ReplyError
			switch {
			case tt.err != nil:
				if !errors.Is(err, tt.err) || c.dead {
					t.Fatalf("reply = %v (dead %v), want %v and the connection up", err, c.dead, tt.err)
				}
			case tt.errno != 0:
				if !errors.As(err, &re) || re.Errno != tt.errno {
					t.Fatalf("reply = %v, want errno %d", err, tt.errno)
				}
			case err != nil || f.ReqID != id:
				t.Fatalf("reply = %+v, %v; want the answer to %d", f, err, id)
			}
		})
	}
}
