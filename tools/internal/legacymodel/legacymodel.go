// Package legacymodel reads a connection exactly the way the original C++
// ChatClient does, so tests can hold natter to what that client survives.
//
// The original's receive thread loops on
//
//	char buffer[1024] = {0};
//	int len = recv(clientfd, buffer, 1024, 0);   // one read of at most 1024 bytes
//	if (len == -1 || len == 0) { close(clientfd); exit(-1); }
//	json js = json::parse(buffer);               // a C string: up to the first NUL
//	... handle js["msgid"] ...
//
// so everything after the first NUL of one read is thrown away, and a read
// that does not hold a whole JSON object up to its NUL (a frame cut by the
// read, or only filler) makes json::parse throw and the client abort. A
// Client does the same: one Read of 1024 bytes per frame (one recv(2) on a
// TCP connection), the bytes up to the first NUL parsed as one JSON object,
// the rest dropped. A parse failure is recorded as the client's abort and
// ends its reading, as it would end the real client.
//
// Reading runs on a goroutine of its own, like the original's receive
// thread; Pause stops it between two reads (a paused process, a slow
// terminal) without touching the socket.
package legacymodel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// BufSize is the original client's receive buffer.
const BufSize = 1024

// Frame is one frame the client parsed, as it parsed it.
type Frame map[string]any

// MsgID is the frame's msgid (0 when absent).
func (f Frame) MsgID() int {
	v, _ := f["msgid"].(float64)
	return int(v)
}

// Str is a string field ("" when absent).
func (f Frame) Str(k string) string {
	v, _ := f[k].(string)
	return v
}

// Num is a number field (0 when absent).
func (f Frame) Num(k string) int64 {
	v, _ := f[k].(float64)
	return int64(v)
}

// Strings is an array of strings (the LOGIN_ACK's friends, groups and
// offlinemsg), each parsed as the client parses it (json::parse of the
// string).
func (f Frame) Strings(k string) ([]Frame, error) {
	arr, _ := f[k].([]any)
	out := make([]Frame, 0, len(arr))
	for _, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("%s: element %v is not a string", k, e)
		}
		var m Frame
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			return nil, fmt.Errorf("%s: element %q does not parse: %w", k, s, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// ErrAborted is the end of a client whose json::parse threw.
var ErrAborted = errors.New("the original client would abort")

// Client is the original client's connection and receive thread.
type Client struct {
	conn net.Conn

	mu      sync.Mutex
	cond    *sync.Cond
	frames  []Frame
	reads   int   // recv calls that returned data
	dropped int   // bytes after the first NUL of a read that were not NUL filler
	err     error // why reading ended: ErrAborted (wrapped), or the connection's end
	pause   time.Duration
	closing chan struct{} // Close was called: a pause ends
	once    sync.Once
	done    chan struct{}
}

// Dial connects to addr and starts the receive thread.
func Dial(addr string) (*Client, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return New(conn), nil
}

// New starts the receive thread on conn.
func New(conn net.Conn) *Client {
	c := &Client{conn: conn, closing: make(chan struct{}), done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	go c.receive()
	return c
}

// Send writes frame followed by one NUL, as the original client sends.
func (c *Client) Send(frame string) error {
	_, err := c.conn.Write(append([]byte(frame), 0))
	return err
}

// Pause makes the receive thread stop for d before its next read.
func (c *Client) Pause(d time.Duration) {
	c.mu.Lock()
	c.pause = d
	c.mu.Unlock()
}

// Close closes the connection the way the process ending does and waits
// for the receive thread to end.
func (c *Client) Close() error {
	c.once.Do(func() { close(c.closing) })
	err := c.conn.Close()
	<-c.done
	return err
}

// Kill ends the client as a crash does: the socket is closed at once, and
// the kernel resets the connection when unread data is left in it.
func (c *Client) Kill() {
	if tc, ok := c.conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func (c *Client) receive() {
	defer close(c.done)
	buf := make([]byte, BufSize)
	for {
		c.mu.Lock()
		p := c.pause
		c.pause = 0
		c.mu.Unlock()
		if p > 0 {
			t := time.NewTimer(p)
			select {
			case <-t.C:
			case <-c.closing:
				t.Stop()
			}
		}
		clear(buf)
		n, err := c.conn.Read(buf) // one recv(fd, buffer, 1024, 0)
		if n == 0 || err != nil {
			c.end(fmt.Errorf("connection ended: %w", err))
			return
		}
		text, rest, _ := bytes.Cut(buf[:n], []byte{0})
		var f Frame
		perr := json.Unmarshal(text, &f)
		if perr == nil && f == nil {
			perr = errors.New("not an object")
		}
		if perr == nil {
			if _, ok := f["msgid"].(float64); !ok {
				// js["msgid"].get<int>() throws on a missing msgid.
				perr = errors.New("no numeric msgid")
			}
		}
		c.mu.Lock()
		c.reads++
		c.dropped += len(bytes.Trim(rest, "\x00"))
		if perr != nil {
			c.err = fmt.Errorf("%w: read %d of %d bytes, parsing %q: %v", ErrAborted, c.reads, n, text, perr)
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		c.frames = append(c.frames, f)
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

func (c *Client) end(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.cond.Broadcast()
	c.mu.Unlock()
}

// Frames returns every frame the client parsed so far.
func (c *Client) Frames() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...)
}

// Dropped is the number of bytes, other than NUL filler, that reads
// brought after a frame's NUL: data the original client throws away. Any
// is a lost frame.
func (c *Client) Dropped() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Err is why the receive thread ended (nil while it runs). errors.Is(err,
// ErrAborted) when the real client would have aborted.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// WaitFor waits until the client has parsed a frame for which match is
// true, starting at frame index from, and returns that frame and its index.
func (c *Client) WaitFor(from int, timeout time.Duration, match func(Frame) bool) (Frame, int, error) {
	deadline := time.Now().Add(timeout)
	t := time.AfterFunc(timeout, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer t.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := from; ; {
		for ; i < len(c.frames); i++ {
			if match(c.frames[i]) {
				return c.frames[i], i, nil
			}
		}
		if c.err != nil {
			return nil, i, c.err
		}
		if time.Now().After(deadline) {
			return nil, i, fmt.Errorf("no matching frame within %s (%d frames parsed)", timeout, len(c.frames))
		}
		c.cond.Wait()
	}
}

// Chats returns the chat texts (ONE_CHAT and GROUP_CHAT frames, and the
// LOGIN_ACKs' offline messages) the client has shown, in order.
func (c *Client) Chats() ([]string, error) {
	var out []string
	for _, f := range c.Frames() {
		switch f.MsgID() {
		case 6, 10:
			out = append(out, f.Str("msg"))
		case 2:
			offline, err := f.Strings("offlinemsg")
			if err != nil {
				return nil, err
			}
			for _, m := range offline {
				out = append(out, m.Str("msg"))
			}
		}
	}
	return out, nil
}
