package netconn

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/natter-chat/natter/shared/wire"
)

// transport is what a Conn needs of the code that owns its socket.
type transport interface {
	// wake makes the transport write what is queued soon. Called from any
	// goroutine, never with Conn.mu held; it must not block.
	wake()
	// shutdown closes the socket at once; the transport then reports the
	// end (Handler.Closed). Any goroutine.
	shutdown()
	// closeWrite ends the gateway's side of the connection only (a FIN);
	// reading goes on until the client closes its side.
	closeWrite() error
	// writeRecord writes one legacy record, blocking until it is written
	// (records.go); records are only ever written from the pacer.
	writeRecord(b []byte) error
	// tcpState reads TCP_INFO; ok is false when the socket is not TCP or
	// is closed.
	tcpState() (st tcpState, ok bool)
	// endState is tcpState with the socket's pending error, once reading
	// has ended.
	endState() (st tcpState, ok bool)
	// tcp reports whether the socket is TCP (records mode is possible).
	tcp() bool
	// writeNow writes b from the caller's goroutine without blocking and
	// reports how much the socket took (0 when it takes nothing now);
	// errNoDirect when the transport does not write from other goroutines.
	writeNow(b []byte) (int, error)
	// resume hands the handler the frames that waited while paused.
	resume()
	remoteAddr() net.Addr
}

type connState uint8

const (
	stateOpen       connState = iota
	stateLastQueued           // close once what is queued is written
	stateHalfClosed           // our side is closed; waiting for the client's end
	stateClosed
)

// Conn is one client connection (see the package comment).
type Conn struct {
	h Handler
	t transport
	*env

	term     atomic.Uint32 // the terminator of the last frame received
	paused   atomic.Bool   // the handler asked for no more frames for now (Pause)
	reason   atomic.Uint32 // Reason: why the connection ends, the first cause wins
	lastRead atomic.Int64  // Unix ns when bytes last came in (IdleTimeout)

	mu        sync.Mutex
	out       *[][]byte // frames queued and not yet handed to the socket (from outPool); nil: none
	outBytes  int32
	pend      int32 // bytes handed to the socket that it has not taken yet
	stalled   int64 // Unix ns since when pend > 0; 0: nothing waits
	state     connState
	scheduled bool     // the transport was woken and will flush
	inFrame   bool     // the transport is calling the Handler: it flushes after
	writing   bool     // frames of this connection are being written (a flush, or a direct write)
	rec       *records // legacy records mode; nil otherwise
	readDone  bool     // reading has ended
	finished  bool
}

// env is what a transport's connections share.
type env struct {
	opts Options
	log  *slog.Logger
}

// outPool holds the frame lists of connections between writes: an idle
// connection keeps none.
var outPool = sync.Pool{New: func() any { s := make([][]byte, 0, 8); return &s }}

func newConn(h Handler, e *env) *Conn {
	c := &Conn{h: h, env: e}
	c.term.Store(uint32(wire.TermNewline))
	c.lastRead.Store(time.Now().UnixNano())
	return c
}

// transport is the connection's current transport.
func (c *Conn) transport() transport {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Term is the terminator of the last frame the client sent ('\n' before
// any): replies end with it.
func (c *Conn) Term() byte { return byte(c.term.Load()) }

// RemoteAddr is the client's address.
func (c *Conn) RemoteAddr() net.Addr {
	c.mu.Lock()
	t := c.t
	c.mu.Unlock()
	return t.remoteAddr()
}

// SetReason records why the connection ends, unless a cause is known
// already. Call it before closing.
func (c *Conn) SetReason(r Reason) {
	c.reason.CompareAndSwap(uint32(ReasonUnknown), uint32(r))
}

// Reason is why the connection ended (or will).
func (c *Conn) Reason() Reason { return Reason(c.reason.Load()) }

// Send queues frame (with its terminator) for the client and reports
// whether it was queued. The Conn owns frame from now on. A client whose
// queue passes Options.WriteLimit is cut off (ReasonSlowClient): Send then
// reports false, as it does once the connection is closing.
func (c *Conn) Send(frame []byte) bool { return c.send(frame, mark{}, false) }

// SendMarked is Send for a frame that carries inbox entry seq of user uid:
// in legacy records mode the mark is confirmed once the client has
// provably read the frame (End.Confirmed).
func (c *Conn) SendMarked(frame []byte, uid, seq int64) bool {
	return c.send(frame, mark{uid, seq}, false)
}

// SendLast queues frame (nil: none) as the last: the connection is closed
// once everything queued is written. In legacy records mode with records
// awaiting confirmation the gateway half-closes instead and waits for the
// client's own close (records.go).
func (c *Conn) SendLast(frame []byte) bool { return c.send(frame, mark{}, true) }

func (c *Conn) send(frame []byte, m mark, last bool) bool {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return false
	}
	if len(frame) > 0 {
		if c.rec != nil {
			if frame = c.rec.record(frame); frame == nil {
				c.mu.Unlock()
				c.log.Error("frame too long for a legacy record; dropped")
				return false
			}
		}
		if !last && int(c.outBytes)+int(c.pend)+len(frame) > c.opts.WriteLimit {
			c.mu.Unlock()
			c.SetReason(ReasonSlowClient)
			c.log.Warn("slow client: write queue full; disconnecting", "limit_bytes", c.opts.WriteLimit)
			c.Close()
			return false
		}
		if !last && c.rec == nil && !c.inFrame && !c.scheduled && !c.writing && c.pend == 0 && c.outLen() == 0 {
			return c.sendNow(frame) // unlocks c.mu
		}
		if c.out == nil {
			c.out = outPool.Get().(*[][]byte)
		}
		*c.out = append(*c.out, frame)
		c.outBytes += int32(len(frame))
		if c.rec != nil {
			c.rec.marks = append(c.rec.marks, m)
		}
	}
	if last {
		c.state = stateLastQueued
	}
	wake := !c.scheduled && !c.inFrame
	c.scheduled = true
	c.mu.Unlock()
	if wake {
		c.kick()
	}
	return true
}

// errNoDirect says a transport does not write from other goroutines.
var errNoDirect = errors.New("no direct writes")

// sendNow writes frame at once from the caller's goroutine when nothing of
// the connection is queued or being written: no hand-over to the transport
// and no wake. What the socket does not take is queued for the transport.
// Call with c.mu held; it is released.
func (c *Conn) sendNow(frame []byte) bool {
	c.writing = true
	t := c.t
	c.mu.Unlock()
	n, err := t.writeNow(frame)
	c.mu.Lock()
	c.writing = false
	if err != nil && !errors.Is(err, errNoDirect) {
		c.mu.Unlock()
		c.SetReason(ReasonWriteError)
		c.log.Debug("write", "err", err)
		c.Close()
		return false
	}
	if rest := frame[n:]; len(rest) > 0 {
		// Before anything queued meanwhile.
		if c.out == nil {
			c.out = outPool.Get().(*[][]byte)
		}
		*c.out = append(*c.out, nil)
		copy((*c.out)[1:], *c.out)
		(*c.out)[0] = rest
		c.outBytes += int32(len(rest))
	}
	wake := (c.outLen() > 0 || c.state == stateLastQueued) && !c.scheduled && !c.inFrame
	if wake {
		c.scheduled = true
	}
	c.mu.Unlock()
	if wake {
		c.kick()
	}
	return true
}

// Pause stops the frames: the transport hands the handler no more until
// Resume. What the client sends meanwhile waits: in the socket (the client's
// TCP then waits too), or on an event loop in its buffer, up to
// MaxPausedBytes, past which the connection is closed as a flood.
func (c *Conn) Pause() { c.paused.Store(true) }

// Resume hands the handler the frames that waited, and those that follow.
func (c *Conn) Resume() {
	if c.paused.CompareAndSwap(true, false) {
		c.transport().resume()
	}
}

// MaxPausedBytes bounds what a paused connection on an event loop holds
// for its client.
const MaxPausedBytes = 4 << 20

// Queued is the number of bytes waiting for the client: queued here and
// handed to the socket but not taken.
func (c *Conn) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.outBytes) + int(c.pend)
}

// Close closes the connection at once, dropping what is queued.
func (c *Conn) Close() {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	c.state = stateClosed
	c.dropOutLocked()
	t := c.t
	c.mu.Unlock()
	t.shutdown()
}

func (c *Conn) closedState() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == stateClosed
}

// Closing reports whether the connection is closing or closed.
func (c *Conn) Closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state != stateOpen
}

// take hands the transport what is queued (for one write) and whether the
// connection is to be closed after it. It clears the flush schedule. The
// transport gives the list back (giveBack) once written.
func (c *Conn) take() (frames *[][]byte, bytes int, last bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scheduled = false
	if c.writing {
		// A direct write is under way: it looks at the queue after, and
		// nothing may overtake it.
		return nil, 0, false
	}
	frames, bytes = c.out, int(c.outBytes)
	c.out, c.outBytes = nil, 0
	c.writing = frames != nil
	return frames, bytes, c.state == stateLastQueued
}

// written ends a write of frames taken by take: n bytes are still with the
// socket, not taken.
func (c *Conn) written(n int, now int64) {
	c.mu.Lock()
	c.writing = false
	c.mu.Unlock()
	c.setPending(n, now)
}

// giveBack returns a written frame list to the pool.
func giveBack(frames *[][]byte) {
	if frames == nil || cap(*frames) > 64 {
		return
	}
	clear(*frames)
	*frames = (*frames)[:0]
	outPool.Put(frames)
}

// dropOutLocked drops what is queued. Call with c.mu held.
func (c *Conn) dropOutLocked() {
	giveBack(c.out)
	c.out, c.outBytes = nil, 0
}

// outLen is the number of frames queued. Call with c.mu held.
func (c *Conn) outLen() int {
	if c.out == nil {
		return 0
	}
	return len(*c.out)
}

// setPending records how many bytes the socket has not taken yet, as the
// transport knows after a write.
func (c *Conn) setPending(n int, now int64) {
	c.mu.Lock()
	switch {
	case n == 0:
		c.stalled = 0
	case c.stalled == 0 || n < int(c.pend):
		c.stalled = now // stalled from now (or progress was made)
	}
	c.pend = int32(n)
	c.mu.Unlock()
}

// enterFrames and leaveFrames bracket the transport's calls of
// Handler.Frame: frames sent meanwhile are written together after them.
func (c *Conn) enterFrames() {
	c.mu.Lock()
	c.inFrame = true
	c.mu.Unlock()
}

// leaveFrames reports whether the transport should flush now.
func (c *Conn) leaveFrames() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFrame = false
	return c.scheduled
}

// read notes that bytes came in.
func (c *Conn) read(now int64) { c.lastRead.Store(now) }

// Sweep checks the connection's timers at now: an idle client
// (IdleTimeout), a client that takes none of its bytes (WriteTimeout), a
// half-closed connection whose client did not close its side. The owner
// calls it for every connection about once a second.
func (c *Conn) Sweep(now time.Time) {
	n := now.UnixNano()
	if t := c.opts.IdleTimeout; t > 0 && n-c.lastRead.Load() > int64(t) {
		c.mu.Lock()
		open := c.state == stateOpen
		c.mu.Unlock()
		if open {
			c.SetReason(ReasonIdle)
			c.Close()
			return
		}
	}
	c.mu.Lock()
	stalled := c.stalled != 0 && n-c.stalled > int64(c.opts.WriteTimeout)
	expired := c.state == stateHalfClosed && c.rec != nil && c.rec.closeAt != 0 && n > c.rec.closeAt
	checkPending := c.stalled != 0 && !stalled
	c.mu.Unlock()
	switch {
	case stalled:
		c.SetReason(ReasonWriteTimeout)
		c.log.Debug("client took nothing for the write timeout; closing", "write_timeout", c.opts.WriteTimeout)
		c.Close()
	case expired:
		c.Close()
	case checkPending:
		c.kick() // the transport refreshes what the socket has taken
	}
}

// kick gets what is queued written: the pacer for legacy records, else the
// transport's flush.
func (c *Conn) kick() {
	c.mu.Lock()
	if c.rec != nil {
		start := c.flushRecordsLocked()
		c.mu.Unlock()
		if start {
			go c.pace()
		}
		return
	}
	t := c.t
	c.mu.Unlock()
	t.wake()
}

// refusal is a read error the client caused below the frame layer, such
// as a binary WebSocket message (wsconn.RefusedError): the session answers
// it (Handler.Refused) before the connection closes.
type refusal interface {
	Refusal() (wire.Errno, string)
}

// endReading runs once when the transport has read its last frame,
// before the socket is closed: it judges what a legacy client has read,
// records why reading ended and tells the handler, closing the
// connection at once when the handler has nothing more to write.
func (c *Conn) endReading(err error) {
	c.judge(err)
	c.mu.Lock()
	c.readDone = true
	c.mu.Unlock()
	var rf refusal
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		c.SetReason(ReasonFrameTooLarge) // Refused was called with it
	case errors.As(err, &rf):
		c.SetReason(ReasonUnsupported)
		c.h.Refused(c, err)
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		c.SetReason(ReasonEOF)
	case errors.Is(err, net.ErrClosed):
		// Closed here; whoever closed it gave the reason.
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.SetReason(ReasonIdle)
	default:
		c.SetReason(ReasonReadError)
		c.log.Info("read failed; closing", "err", err)
	}
	keep := c.h.ReadEnded(c, err)
	c.mu.Lock()
	halfClosed := c.state == stateHalfClosed
	c.mu.Unlock()
	if !keep || halfClosed {
		c.Close() // nothing to write, or the client ended a half-closed connection
	}
}

// finish reports the end to the handler, once, after the socket is closed.
func (c *Conn) finish(err error) {
	c.mu.Lock()
	if c.finished {
		c.mu.Unlock()
		return
	}
	c.finished = true
	c.state = stateClosed
	c.dropOutLocked()
	end := End{Reason: c.Reason(), Err: err}
	if c.rec != nil {
		c.rec.marks = nil
		end.Confirmed, end.Unconfirmed = c.rec.confirmedEnd, c.rec.unconfirmedEnd
	}
	c.mu.Unlock()
	c.h.Closed(c, end)
}
