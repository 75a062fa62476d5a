package netconn

import (
	"errors"
	"io"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Legacy records. The original C++ client reads with ONE recv(fd, buf,
// 1024) per frame and parses the buffer as a C string: it stops at the
// first NUL and throws the rest of that read away. Two frames in one read
// lose the second; a read that ends inside a frame makes the next one start
// in the middle of a frame, which aborts the client. For such a client
// (NUL-framed, on TCP) a Conn in records mode:
//
//  1. writes every frame as one record of exactly RecordSize bytes: the
//     frame, its NUL, then NUL filler. recv(1024) on a stream of whole
//     records returns exactly one record whenever one is buffered, so
//     records that pile up while the client is busy (a paused process, a
//     slow terminal) are read one per recv later, none lost; the client
//     never looks past the first NUL. The session keeps every frame within
//     RecordSize (gateway/internal/codec).
//  2. paces them: the next record is written once the peer's TCP has
//     acknowledged the previous one (TCP_INFO: nothing unacknowledged or
//     unsent), at least Options.LegacyGap after it, and only while the
//     peer's advertised window has room (minWindow): each record travels
//     as a segment of its own and is never cut by a closing window.
//  3. confirms what was read only at the connection's end: a TCP socket
//     closed with unread data answers with a reset, so a clean end of stream
//     (FIN) with every byte acknowledged means every record was read. The
//     peer's window cannot tell: measured on loopback it stays at 65,536
//     bytes with 2 KB unread (the window is clamped well below the free
//     buffer). When the gateway closes, it half-closes and waits for the
//     client's own close (the original client exits when the server ends
//     the connection). After a reset, a crash or a timeout nothing
//     unconfirmed counts as read: the worst case is a duplicate at the next
//     login, never a loss.
const (
	// RecordSize is the original client's receive buffer.
	RecordSize = 1024
	// minWindow: below this many bytes of advertised window the client is
	// not reading; records wait rather than be cut by the window.
	minWindow = 8 * RecordSize
	// closeWait bounds the wait for the client's own close after the
	// gateway half-closed a connection in records mode.
	closeWait = 3 * time.Second
)

// mark is the inbox entry a frame carries: uid's seq (zero: none).
type mark struct{ uid, seq int64 }

// records is a Conn's records-mode state, guarded by Conn.mu.
type records struct {
	// wmu is held while a record is written and counted as written, so
	// that the judgement of the end (judge) sees every record the socket
	// took: a record counts as written only once the write returned.
	wmu sync.Mutex

	marks       []mark // the marks of the frames queued (parallel to Conn.out)
	running     bool   // the pacer goroutine runs
	written     map[int64]int64
	reached     map[int64]int64 // acknowledged by the peer's TCP
	done        bool            // the end was judged: nothing more is recorded
	halfClosed  bool            // the gateway half-closed the connection
	writeFailed bool            // a record could not be written (the peer reset)

	closeAt        int64 // half-closed: Unix ns after which the socket is closed
	confirmedEnd   map[int64]int64
	unconfirmedEnd bool
}

// record pads frame (ended by NUL) to one record; nil when it does not fit.
func (r *records) record(frame []byte) []byte {
	n := len(frame)
	if n > RecordSize {
		return nil
	}
	if cap(frame) >= RecordSize {
		frame = frame[:RecordSize]
		clear(frame[n:])
		return frame
	}
	out := make([]byte, RecordSize)
	copy(out, frame)
	return out
}

func bump(m *map[int64]int64, k mark) {
	if k.uid == 0 {
		return
	}
	if *m == nil {
		*m = map[int64]int64{}
	}
	(*m)[k.uid] = max((*m)[k.uid], k.seq)
}

// confirmed is what the client has read, given how its connection ended:
// end is the error that ended reading (io.EOF for a FIN) and st the TCP
// state then. A reset or any other end confirms nothing.
func (r *records) confirmed(end error, st tcpState, stOK bool) map[int64]int64 {
	if !errors.Is(end, io.EOF) || errors.Is(end, syscall.ECONNRESET) {
		return nil
	}
	if stOK && (st.err != 0 || !st.finReceived(r.halfClosed)) {
		return nil // a reset (the event loop reports one as an end of stream too)
	}
	if r.writeFailed {
		return nil
	}
	if stOK && st.pending == 0 {
		return r.written
	}
	return r.reached
}

// SetRecords turns legacy records mode on or off (package comment of
// records.go). Turning it off is refused while records await
// confirmation.
func (c *Conn) SetRecords(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case on && c.rec == nil:
		if c.t.tcp() {
			c.rec = &records{}
		}
	case !on && c.rec != nil && len(c.rec.written) == 0 && !c.rec.running && c.outLen() == 0:
		c.rec = nil
	}
}

// Records reports whether the connection is in records mode.
func (c *Conn) Records() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec != nil
}

// Written is the highest mark of uid written to the connection and not
// confirmed yet: a new login on the same connection goes on after it (the
// client reads it first).
func (c *Conn) Written(uid int64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rec == nil {
		return 0
	}
	return c.rec.written[uid]
}

// flushRecords starts the pacer if records are queued and it is not
// running. Call with c.mu held; it reports whether the caller must start
// it (go c.pace()).
func (c *Conn) flushRecordsLocked() bool {
	c.scheduled = false
	if c.rec.running || (c.outLen() == 0 && c.state != stateLastQueued) {
		return false
	}
	c.rec.running = true
	return true
}

// pace writes queued records one at a time (rule 2) until none is left,
// then ends; it closes or half-closes the connection after the last.
func (c *Conn) pace() {
	for {
		c.mu.Lock()
		if c.state == stateClosed || c.state == stateHalfClosed {
			c.rec.running = false
			c.mu.Unlock()
			return
		}
		if c.outLen() == 0 {
			c.rec.running = false
			last := c.state == stateLastQueued
			c.mu.Unlock()
			if last {
				c.finishRecords()
			}
			return
		}
		out := *c.out
		f, m := out[0], c.rec.marks[0]
		copy(out, out[1:])
		out[len(out)-1] = nil
		*c.out = out[:len(out)-1]
		c.rec.marks[0] = mark{}
		c.rec.marks = c.rec.marks[1:]
		if len(*c.out) == 0 {
			c.dropOutLocked()
			c.rec.marks = nil
		}
		c.outBytes -= int32(len(f))
		c.mu.Unlock()

		start := time.Now()
		rec := c.rec
		rec.wmu.Lock()
		err := c.transport().writeRecord(f)
		if err == nil {
			c.mu.Lock()
			if !rec.done {
				bump(&rec.written, m)
			}
			c.mu.Unlock()
		}
		if err != nil {
			c.mu.Lock()
			rec.writeFailed = true
			c.mu.Unlock()
		}
		rec.wmu.Unlock()
		if err != nil {
			c.SetReason(ReasonWriteError)
			c.Close()
			continue
		}
		reached, err := c.awaitPeer(start)
		if err != nil {
			c.SetReason(ReasonWriteTimeout)
			c.log.Debug("legacy client stopped reading; closing", "write_timeout", c.opts.WriteTimeout)
			c.Close()
			continue
		}
		if reached {
			c.mu.Lock()
			if !c.rec.done {
				bump(&c.rec.reached, m)
			}
			c.mu.Unlock()
		}
	}
}

// awaitPeer waits until the record written at start has reached the
// peer's TCP and the peer's window has room again, and the gap has passed.
// It fails when that takes longer than WriteTimeout.
func (c *Conn) awaitPeer(start time.Time) (reached bool, err error) {
	deadline := start.Add(c.opts.WriteTimeout)
	poll := 50 * time.Microsecond
	for {
		st, ok := c.transport().tcpState()
		if !ok {
			return false, nil // closed: the pacer's loop sees it
		}
		if st.pending == 0 && st.window >= minWindow {
			if d := time.Until(start.Add(c.opts.LegacyGap)); d > 0 {
				time.Sleep(d)
			}
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, errors.New("the client stopped reading")
		}
		time.Sleep(poll)
		poll = min(2*poll, 20*time.Millisecond)
	}
}

// finishRecords ends a connection in records mode after its last record:
// half-closed when records await confirmation, else closed.
func (c *Conn) finishRecords() {
	c.mu.Lock()
	if c.state != stateLastQueued {
		c.mu.Unlock()
		return
	}
	if len(c.rec.written) == 0 || c.readDone {
		c.mu.Unlock()
		c.Close() // nothing to confirm, or the client's end was seen
		return
	}
	c.state = stateHalfClosed
	c.rec.halfClosed = true
	c.rec.closeAt = time.Now().Add(closeWait).UnixNano()
	c.mu.Unlock()
	if err := c.transport().closeWrite(); err != nil {
		c.Close()
	}
}

// judge decides, as the connection ends with end (the read error), what
// the client has confirmed reading (records.confirmedEnd). Called by the transport before the
// socket is closed, once.
func (c *Conn) judge(end error) {
	c.mu.Lock()
	rec := c.rec
	c.mu.Unlock()
	if rec == nil {
		return
	}
	rec.wmu.Lock() // a record being written is counted first
	defer rec.wmu.Unlock()
	st, ok := c.transport().endState()
	c.mu.Lock()
	defer c.mu.Unlock()
	if rec.done {
		return
	}
	rec.done = true
	rec.confirmedEnd = rec.confirmed(end, st, ok)
	for uid, seq := range rec.written {
		if rec.confirmedEnd[uid] < seq {
			rec.unconfirmedEnd = true
		}
	}
}

// tcpState is what TCP_INFO says about the bytes written to a connection.
type tcpState struct {
	pending int    // segments or bytes not yet acknowledged by the peer
	window  uint32 // the peer's advertised receive window
	state   uint8  // the TCP state (Linux's TCP_ESTABLISHED, ...)
	err     int    // the socket's pending error (SO_ERROR): ECONNRESET after a reset; read by judge only
}

// finReceived reports whether the peer ended the connection with a FIN
// rather than a reset, which leaves the socket in TCP_CLOSE with a pending
// error. A socket the gateway half-closed is in TCP_CLOSE after the peer's
// FIN too (its time-wait lives on without it).
func (st tcpState) finReceived(halfClosed bool) bool {
	switch st.state {
	case tcpCloseWait, tcpLastAck, tcpTimeWait, tcpClosing:
		return true
	case tcpClose:
		return halfClosed
	}
	return false
}

// Linux TCP states (include/net/tcp_states.h).
const (
	tcpTimeWait  = 6
	tcpClose     = 7
	tcpCloseWait = 8
	tcpLastAck   = 9
	tcpClosing   = 11
)

// readEndState reads fd's TCP_INFO and pending error (which it clears).
func readEndState(fd int) (tcpState, bool) {
	st, ok := readTCPState(fd)
	if ok {
		st.err, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	}
	return st, ok
}

// readTCPState reads fd's TCP_INFO.
func readTCPState(fd int) (tcpState, bool) {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return tcpState{}, false
	}
	return tcpState{pending: int(ti.Unacked) + int(ti.Notsent_bytes), window: ti.Snd_wnd, state: ti.State}, true
}
