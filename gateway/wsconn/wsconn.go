// Package wsconn carries natter's frames over WebSocket as a net.Conn. The
// gateway wraps each WebSocket client in a Conn (New) and serves it with
// exactly the session, routing and delivery code TCP clients get; clients
// of the gateway (natter bench, the tests) Dial one. Each text message is
// one full-dialect frame: reading a Conn yields the message's bytes, then
// the '\n' that ends a frame on TCP; each frame written to it (ended by
// '\n' or NUL) goes out as one text message, without its terminator.
//
// A message cannot split into two frames: a raw newline or NUL inside one
// (JSON never needs them: both are escaped inside strings) is read as the
// ASCII substitute character 0x1A, which no JSON text contains, so the
// gateway answers the message as malformed (errno 100) as it answers any
// frame that is not JSON, and the connection stays usable. A binary message
// is refused: Read returns ErrBinaryMessage, which the gateway answers with
// errno 100 before closing the connection (close status 1003).
package wsconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/natter-chat/natter/shared/wire"
)

// Path is where a gateway serves its WebSocket clients.
const Path = "/ws"

// Substitute replaces a raw newline or NUL inside a message: the ASCII
// substitute character, invalid anywhere in JSON.
const Substitute byte = 0x1a

// RefusedError is a message the connection cannot carry. Its Refusal is the
// errno and text the session answers with before closing the connection.
type RefusedError struct {
	Errno wire.Errno
	Msg   string
}

func (e *RefusedError) Error() string { return "websocket: " + e.Msg }

// Refusal is the reply the client gets.
func (e *RefusedError) Refusal() (wire.Errno, string) { return e.Errno, e.Msg }

// ErrBinaryMessage is returned by Read when the client sent a binary
// message: natter's frames are JSON text.
var ErrBinaryMessage = &RefusedError{Errno: wire.BadJSON, Msg: "binary message: send each frame as one text message"}

// Conn is a WebSocket connection seen as a stream of frames. Close never
// blocks: it starts the close handshake, which Done reports the end of.
//
// Deadlines: on the gateway's side (New) an expired deadline closes the
// WebSocket, as coder/websocket does with any expired context; the gateway
// closes a connection whose read or write timed out anyway, and reading in
// the caller's goroutine costs nothing more per idle connection. A client's
// Conn (Dial) reads messages ahead in a goroutine of its own, so an expired
// read deadline fails that Read only, as on TCP.
type Conn struct {
	ws     *websocket.Conn
	local  net.Addr
	remote net.Addr
	ahead  *readAhead // Dial's connections only

	rmu       sync.Mutex // the read side
	msg       io.Reader  // the message being read; nil between messages
	msgCancel context.CancelFunc
	termOwed  bool // the message is read: its '\n' is next

	wmu     sync.Mutex // the write side
	partial []byte     // a frame written without its terminator yet

	dmu           sync.Mutex
	readDeadline  time.Time
	writeDeadline time.Time

	status    atomic.Int32 // the close status Close sends
	closeOnce sync.Once
	closed    chan struct{} // Close was called
	done      chan struct{} // the close handshake has ended
}

// New wraps ws. Read limits messages to maxFrame bytes the way the frame
// decoder does: a longer message is read far enough for the decoder to
// refuse it (errno 104, as on TCP).
func New(ws *websocket.Conn, local, remote net.Addr, maxFrame int) *Conn {
	ws.SetReadLimit(int64(maxFrame) + 1)
	c := &Conn{
		ws:     ws,
		local:  local,
		remote: remote,
		closed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	c.status.Store(int32(websocket.StatusNormalClosure))
	return c
}

// Read reads the current message, then its terminator, then the next
// message.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	if c.ahead != nil {
		return c.readAhead(p)
	}
	for {
		if c.isClosed() {
			c.endMessage()
			return 0, net.ErrClosed
		}
		if c.termOwed {
			c.termOwed = false
			p[0] = wire.TermNewline
			return 1, nil
		}
		if c.msg == nil {
			if err := c.nextMessage(); err != nil {
				return 0, err
			}
		}
		n, err := c.msg.Read(p)
		substitute(p[:n])
		if errors.Is(err, io.EOF) {
			c.endMessage()
			if n < len(p) {
				p[n] = wire.TermNewline
				return n + 1, nil
			}
			c.termOwed = true
			return n, nil
		}
		if err != nil {
			c.endMessage()
			return n, c.readError(err)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// nextMessage waits for the next data message, bounded by the read
// deadline, which then holds for the whole message.
func (c *Conn) nextMessage() error {
	c.dmu.Lock()
	dl := c.readDeadline
	c.dmu.Unlock()
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if !dl.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, dl)
	}
	typ, r, err := c.ws.Reader(ctx)
	if err != nil {
		cancel()
		return c.readError(err)
	}
	if typ != websocket.MessageText {
		cancel()
		c.status.Store(int32(websocket.StatusUnsupportedData))
		return ErrBinaryMessage
	}
	c.msg, c.msgCancel = r, cancel
	return nil
}

func (c *Conn) endMessage() {
	if c.msgCancel != nil {
		c.msgCancel()
	}
	c.msg, c.msgCancel = nil, nil
}

// readError translates coder/websocket's errors into what a TCP connection
// would report: net.ErrClosed after Close, os.ErrDeadlineExceeded for an
// expired deadline, io.EOF when the client closed or went away.
func (c *Conn) readError(err error) error {
	switch {
	case c.isClosed():
		return net.ErrClosed
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("websocket read: %w", os.ErrDeadlineExceeded)
	case websocket.CloseStatus(err) != -1, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return io.EOF
	case errors.Is(err, net.ErrClosed):
		// coder/websocket closed it (a protocol error, a message over the
		// limit): a read error, not a close of ours.
		return fmt.Errorf("websocket read: %v", err)
	}
	return fmt.Errorf("websocket read: %w", err)
}

// substitute makes a raw newline or NUL in a message unparsable instead of
// a frame terminator.
func substitute(b []byte) {
	for i, ch := range b {
		if ch == wire.TermNewline || ch == wire.TermNUL {
			b[i] = Substitute
		}
	}
}

// Write sends each frame in p (ended by '\n' or NUL) as one text message,
// without its terminator. A frame whose terminator has not been written yet
// waits for it.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.isClosed() {
		return 0, net.ErrClosed
	}
	c.dmu.Lock()
	dl := c.writeDeadline
	c.dmu.Unlock()
	ctx := context.Background()
	if !dl.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	n := 0
	for len(p) > 0 {
		i := indexTerm(p)
		if i < 0 {
			c.partial = append(c.partial, p...)
			return n + len(p), nil
		}
		f := p[:i]
		if len(c.partial) > 0 {
			f = append(c.partial, f...)
			c.partial = nil
		}
		if len(f) > 0 {
			if err := c.ws.Write(ctx, websocket.MessageText, f); err != nil {
				return n, c.writeError(err)
			}
		}
		n += i + 1
		p = p[i+1:]
	}
	return n, nil
}

func (c *Conn) writeError(err error) error {
	switch {
	case c.isClosed():
		return net.ErrClosed
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("websocket write: %w", os.ErrDeadlineExceeded)
	}
	return fmt.Errorf("websocket write: %w", err)
}

func indexTerm(b []byte) int {
	for i, ch := range b {
		if ch == wire.TermNewline || ch == wire.TermNUL {
			return i
		}
	}
	return -1
}

// Close starts the WebSocket close handshake (status 1000, or 1003 after a
// binary message) and returns at once: a blocked Read returns when the
// handshake ends (a client's at once), a Write after Close fails. Done is
// closed when the handshake is over, at most about 10 s later
// (coder/websocket waits 5 s to send the close frame and 5 s for the
// peer's).
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		go func() {
			defer close(c.done)
			c.ws.Close(websocket.StatusCode(c.status.Load()), "")
			if c.ahead != nil {
				<-c.ahead.done
			}
		}()
	})
	return nil
}

// Done is closed once the close handshake Close started has ended; the
// owner of the connection waits for it.
func (c *Conn) Done() <-chan struct{} { return c.done }

func (c *Conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// LocalAddr is the gateway's address of the connection.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr is the client's address (the proxy's, behind one).
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.dmu.Lock()
	c.readDeadline, c.writeDeadline = t, t
	c.dmu.Unlock()
	c.deadlineChanged()
	return nil
}

// SetReadDeadline bounds the wait for the next message and the reading of
// it; it applies from the next message on.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	c.readDeadline = t
	c.dmu.Unlock()
	c.deadlineChanged()
	return nil
}

// SetWriteDeadline bounds the following writes.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.dmu.Lock()
	c.writeDeadline = t
	c.dmu.Unlock()
	return nil
}

// Addr is a WebSocket peer's address: the TCP address as the HTTP server
// saw it.
type Addr string

// Network is "websocket".
func (Addr) Network() string { return "websocket" }

func (a Addr) String() string { return string(a) }

// clientReadLimit bounds a server message a client accepts (a full
// LIST_GROUPS reply can be hundreds of kilobytes).
const clientReadLimit = 16 << 20

// Dial opens a WebSocket to a gateway (url: ws://host:port/ws) and returns
// it as a client's stream of frames. opts may be nil. The connection reads
// messages ahead in a goroutine that ends with it; Close and wait for Done
// to release everything.
func Dial(ctx context.Context, url string, opts *websocket.DialOptions) (*Conn, error) {
	ws, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("websocket %s: HTTP %s: %w", url, resp.Status, err)
		}
		return nil, fmt.Errorf("websocket %s: %w", url, err)
	}
	ws.SetReadLimit(clientReadLimit)
	c := &Conn{
		ws:     ws,
		local:  Addr(""),
		remote: Addr(url),
		closed: make(chan struct{}),
		done:   make(chan struct{}),
		ahead:  &readAhead{msgs: make(chan []byte, 64), wake: make(chan struct{}, 1), done: make(chan struct{})},
	}
	c.status.Store(int32(websocket.StatusNormalClosure))
	go c.readMessages()
	return c, nil
}

// readAhead holds the messages a client's Conn has read ahead.
type readAhead struct {
	msgs chan []byte   // each message with its terminator; closed at the end
	err  error         // why reading ended, set before msgs is closed
	wake chan struct{} // the read deadline changed: a waiting Read looks at it again
	done chan struct{} // the goroutine has ended
	cur  []byte        // the rest of the message Read is returning
}

func (c *Conn) readMessages() {
	a := c.ahead
	defer close(a.done)
	defer close(a.msgs)
	for {
		typ, b, err := c.ws.Read(context.Background())
		if err == nil && typ != websocket.MessageText {
			err = ErrBinaryMessage
		}
		if err != nil {
			a.err = c.readError(err)
			return
		}
		substitute(b)
		select {
		case a.msgs <- append(b, wire.TermNewline):
		case <-c.closed:
			a.err = net.ErrClosed
			return
		}
	}
}

func (c *Conn) readAhead(p []byte) (int, error) {
	a := c.ahead
	for len(a.cur) == 0 {
		c.dmu.Lock()
		dl := c.readDeadline
		c.dmu.Unlock()
		var expired <-chan time.Time
		var t *time.Timer
		if !dl.IsZero() {
			t = time.NewTimer(time.Until(dl))
			expired = t.C
		}
		var err error
		select {
		case m, ok := <-a.msgs:
			if ok {
				a.cur = m
			} else {
				err = a.err
			}
		case <-expired:
			err = fmt.Errorf("websocket read: %w", os.ErrDeadlineExceeded)
		case <-a.wake: // a new deadline: wait again with it
		case <-c.closed:
			err = net.ErrClosed
		}
		if t != nil {
			t.Stop()
		}
		if err != nil {
			return 0, err
		}
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// deadlineChanged wakes a client's Read waiting with the old deadline.
func (c *Conn) deadlineChanged() {
	if c.ahead == nil {
		return
	}
	select {
	case c.ahead.wake <- struct{}{}:
	default:
	}
}
