package session

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/google/uuid"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/wire"
)

type dialect uint8

const (
	dialectUnset dialect = iota
	dialectLegacy
	dialectFull
)

type loginState uint8

const (
	stateNone    loginState = iota
	stateLogging            // subscribed, waiting for the user service
	stateLive               // logged in
)

// outFrame is a frame queued for a connection's writer.
type outFrame struct {
	data   []byte // with its terminator; nil for a bare close marker
	ackUID int64  // when > 0, acknowledge ackSeq for ackUID once written (legacy dialect)
	ackSeq int64
	stored int64 // a live push: its store time in Unix ms (delivery latency); 0 otherwise
	msgs   int32 // chat messages the frame carries
	msgid  uint8 // the frame's msgid, for the frame counters (0: other)
	last   bool  // close the connection after this frame
}

// Session is one client connection. A reader goroutine (run) handles the
// client's frames in order; a writer goroutine owns the socket's write side
// and drains a bounded queue, so nothing else ever blocks on the client. The
// writer runs only while there is something to write: an idle connection
// costs one parked reader goroutine and a few small structures.
type Session struct {
	hub     *Hub
	conn    net.Conn
	tcp     *net.TCPConn // conn when it is a TCP socket (legacy pacing); nil otherwise
	rd      readRecorder // conn's read side, remembering why reading stopped
	connID  string
	done    chan struct{}
	once    sync.Once
	term    atomic.Uint32
	reason  atomic.Uint32 // closeReason: why the connection ends, the first cause wins
	limiter *rate.Limiter
	tasks   sync.WaitGroup // catch-up goroutines started by live pushes

	wmu        sync.Mutex
	queue      []outFrame    // frames for the writer, at most hub.opts.WriteQueue
	writing    bool          // a writer goroutine is running
	writerDone chan struct{} // closed when the running writer ends
	wclosed    bool          // the connection is closed: no writer starts any more
	lacks      legacyAcks    // legacy records written and reached, acknowledged when the connection ends cleanly
	lacksDone  bool          // the connection's end was judged: lacks takes nothing more
	finishing  atomic.Bool   // half-closed by the gateway: frames are no longer handled

	mu        sync.Mutex
	gen       uint64 // login generation: incremented by every login
	state     loginState
	uid       int64
	name      string
	sid       string
	dialect   dialect
	delivered int64                 // highest seq handed to the writer
	syncing   bool                  // a replay or gap fill is running; live pushes wait in pending
	pending   []api.InboxMessage    // live pushes held back while syncing
	overflow  bool                  // pending overflowed; the inbox has what was dropped
	kicked    bool                  // replaced by a newer login while this one was in flight
	presence  map[int64]friendState // friend id -> the newest presence notice sent
}

const maxPending = 1024

func newSession(h *Hub, conn net.Conn, t Transport) *Session {
	s := &Session{
		hub:     h,
		conn:    conn,
		connID:  uuid.NewString()[:8],
		done:    make(chan struct{}),
		limiter: rate.NewLimiter(rate.Limit(h.opts.FloodRate), h.opts.FloodBurst),
	}
	s.rd.r = conn
	if tc, ok := conn.(*net.TCPConn); ok && t == TCP {
		s.tcp = tc
	}
	s.term.Store(uint32(wire.TermNewline))
	return s
}

// refusal is a read error the client caused below the frame layer, such as
// a binary WebSocket message (wsconn.ErrBinaryMessage): the client is
// answered with its errno and text, then the connection is closed.
type refusal interface {
	Refusal() (wire.Errno, string)
}

// readRecorder passes reads through and keeps the first error: the frame
// decoder reports every read error as the end of the stream.
type readRecorder struct {
	r   io.Reader
	err error
}

func (r *readRecorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && r.err == nil {
		r.err = err
	}
	return n, err
}

// setReason records why the connection ends, unless a cause is known.
// Call it before whatever closes the connection.
func (s *Session) setReason(r closeReason) {
	s.reason.CompareAndSwap(uint32(reasonUnknown), uint32(r))
}

// log is the connection's logger, built when something is logged (a
// logger per connection would cost memory on every idle connection).
func (s *Session) log() *slog.Logger {
	return s.hub.log.With("conn_id", s.connID, "remote", s.conn.RemoteAddr().String())
}

func (s *Session) run() {
	s.readLoop()
	s.confirmLegacy()

	// The client is gone or the connection is closing: stop routing, let the
	// writer finish what is queued, hand over acks, release the session.
	uid, sid, ok := s.endLogin()
	s.enqueue(outFrame{last: true})
	s.waitWriter()
	s.close()
	s.tasks.Wait()
	s.hub.m.closed[closeReason(s.reason.Load())].Inc()
	switch {
	case ok && s.hub.closing.Load():
		// The gateway is stopping: its leave request ends every session at
		// once; only the acks need handing over (the hub flushes them).
	case ok:
		s.hub.logouts.add(uid, sid, false) // a dropped connection: the client may resume
	}
}

// waitWriter waits for the writer to write what is queued (the last
// frame closes the connection), or closes the connection after the write
// timeout.
func (s *Session) waitWriter() {
	s.wmu.Lock()
	done := s.writerDone
	running := s.writing
	s.wmu.Unlock()
	if !running {
		return
	}
	t := time.NewTimer(s.hub.opts.WriteTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.setReason(reasonWriteTimeout)
		s.close()
		<-done
	}
}

// close closes the connection once; the reader and writer then end.
func (s *Session) close() {
	s.once.Do(func() {
		close(s.done)
		s.conn.Close()
		s.wmu.Lock()
		s.wclosed = true
		s.queue = nil
		s.wmu.Unlock()
	})
}

// shutdown closes the connection after what is queued, for reason (the
// gateway drains or stops). A full-dialect client is told to reconnect
// elsewhere first; the legacy dialect has no such frame.
func (s *Session) shutdown(reason closeReason) {
	s.setReason(reason)
	if s.legacy() {
		s.enqueue(outFrame{last: true})
		return
	}
	s.send(map[string]any{"msgid": wire.Reconnect, "errno": wire.GatewayStopping,
		"errmsg": "gateway is shutting down; reconnect"}, true)
}

func (s *Session) readLoop() {
	dec := wire.NewDecoder(&s.rd, s.hub.opts.MaxFrame)
	for {
		if s.hub.opts.IdleTimeout > 0 && !s.finishing.Load() {
			s.conn.SetReadDeadline(time.Now().Add(s.hub.opts.IdleTimeout))
		}
		frame, term, err := dec.Next()
		if err == nil && s.rd.err != nil && errors.Is(s.rd.err, os.ErrDeadlineExceeded) {
			// The rest of a frame cut off by the idle timeout: drop it.
			err = io.EOF
		}
		if err != nil {
			if errors.Is(err, wire.ErrFrameTooLarge) {
				s.setReason(reasonFrameTooLarge)
				s.log().Warn("frame too large; closing", "max", s.hub.opts.MaxFrame)
				s.sendError(wire.Reply, nil, wire.FrameTooLarge, "frame too large; closing", true)
				return
			}
			var rf refusal
			switch rerr := s.rd.err; {
			case errors.As(rerr, &rf):
				errno, msg := rf.Refusal()
				s.setReason(reasonUnsupported)
				s.log().Debug("message refused; closing", "err", rerr)
				s.sendError(wire.Reply, nil, errno, msg, true)
			case rerr == nil, errors.Is(rerr, io.EOF), errors.Is(rerr, syscall.ECONNRESET):
				s.setReason(reasonEOF)
			case errors.Is(rerr, os.ErrDeadlineExceeded):
				s.setReason(reasonIdle)
				s.log().Debug("idle connection closed", "idle_timeout", s.hub.opts.IdleTimeout)
			case errors.Is(rerr, net.ErrClosed):
				// Closed here; whoever closed it gave the reason.
			default:
				s.setReason(reasonReadError)
				s.log().Debug("read", "err", rerr)
			}
			return
		}
		if s.finishing.Load() {
			continue // the gateway is closing: only the client's end matters now
		}
		s.term.Store(uint32(term))
		s.handle(frame)
		select {
		case <-s.done:
			return
		default:
		}
	}
}

// maxBatch bounds one write of queued full-dialect frames.
const maxBatch = 32 << 10

// writeLoop writes queued frames until the queue is empty, then ends.
// Full-dialect frames that are queued together go out in one write; legacy
// frames are written one at a time.
func (s *Session) writeLoop(done chan struct{}) {
	defer close(done)
	var batch []byte
	var acks [][2]int64
	var sent []frameMeta
	for {
		legacy := s.legacy()
		s.wmu.Lock()
		if len(s.queue) == 0 || s.wclosed {
			s.writing = false
			s.queue = nil // an idle connection keeps no queue
			s.wmu.Unlock()
			return
		}
		batch, acks, sent = batch[:0], acks[:0], sent[:0]
		n, last := 0, false
		for n < len(s.queue) && !last && (n == 0 || (!legacy && len(batch) < maxBatch)) {
			f := s.queue[n]
			batch = append(batch, f.data...)
			if f.ackUID > 0 {
				acks = append(acks, [2]int64{f.ackUID, f.ackSeq})
			}
			if f.data != nil {
				sent = append(sent, frameMeta{stored: f.stored, msgs: f.msgs, msgid: f.msgid})
			}
			last = f.last
			s.queue[n] = outFrame{}
			n++
		}
		s.queue = s.queue[n:]
		s.wmu.Unlock()

		paced := legacy && s.records()
		if len(batch) > 0 {
			s.conn.SetWriteDeadline(time.Now().Add(s.hub.opts.WriteTimeout))
			start := time.Now()
			if _, err := s.conn.Write(batch); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					s.setReason(reasonWriteTimeout)
				} else {
					s.setReason(reasonWriteError)
				}
				s.log().Debug("write", "err", err)
				s.close()
				continue // ends the loop: the queue is closed
			}
			s.hub.m.written(sent, time.Now())
			if paced {
				if !s.paceLegacy(start, acks) {
					continue // closed
				}
				acks = acks[:0] // acknowledged when the connection ends (legacy.go)
			}
		}
		for _, a := range acks {
			s.hub.acks.ack(a[0], a[1])
		}
		if last {
			if paced && s.halfClose() {
				continue
			}
			s.close()
			continue
		}
		if cap(batch) > 2*maxBatch {
			batch = nil
		}
	}
}

// records reports whether legacy frames go out as records (legacy.go): to
// a NUL-framed client on TCP, the original client's way. A legacy session
// on a newline connection reads lines.
func (s *Session) records() bool {
	return s.tcp != nil && byte(s.term.Load()) == wire.TermNUL
}

// paceLegacy records the legacy record just written (started at start,
// carrying the inbox acks acks) as written, waits until the next may go and
// records what the peer's TCP has. It reports false when the connection was
// closed meanwhile.
func (s *Session) paceLegacy(start time.Time, acks [][2]int64) bool {
	s.wmu.Lock()
	if !s.lacksDone {
		for _, a := range acks {
			s.lacks.wrote(a[0], a[1])
		}
	}
	s.wmu.Unlock()
	p := legacyPacer{conn: s.tcp, gap: s.hub.opts.LegacyGap}
	reached, err := p.wait(start, start.Add(s.hub.opts.WriteTimeout), s.done)
	if errors.Is(err, errLegacyStalled) {
		s.setReason(reasonWriteTimeout)
		s.log().Debug("legacy client stopped reading; closing", "write_timeout", s.hub.opts.WriteTimeout)
		s.close()
		return false
	}
	if reached {
		s.wmu.Lock()
		if !s.lacksDone {
			for _, a := range acks {
				s.lacks.peerHas(a[0], a[1])
			}
		}
		s.wmu.Unlock()
	}
	return err == nil
}

// halfClose ends the gateway's side of a legacy connection that has
// records awaiting confirmation: the client, seeing the end, closes its
// side, and how it does (FIN, or a reset when it left records unread)
// tells the reader what it read (legacy.go). It reports false when there
// is nothing to confirm and the connection can simply be closed.
func (s *Session) halfClose() bool {
	s.wmu.Lock()
	pending := len(s.lacks.written) > 0 && !s.lacksDone
	if pending {
		s.wclosed = true // nothing more is written
		s.queue = nil
	}
	s.wmu.Unlock()
	if !pending {
		return false
	}
	s.finishing.Store(true)
	s.conn.SetReadDeadline(time.Now().Add(legacyCloseWait))
	if err := s.tcp.CloseWrite(); err != nil {
		s.close()
	}
	return true
}

// confirmLegacy hands over the acks of what a legacy client has read, now
// that its connection's end is known (legacy.go, rule 4).
func (s *Session) confirmLegacy() {
	if s.tcp == nil {
		return
	}
	st, ok := readTCPState(s.tcp)
	s.wmu.Lock()
	s.lacksDone = true
	confirmed := s.lacks.confirmed(s.rd.err, st, ok)
	unconfirmed := len(s.lacks.written) > 0 && len(confirmed) == 0
	s.wmu.Unlock()
	for uid, seq := range confirmed {
		s.hub.acks.ack(uid, seq)
	}
	if unconfirmed {
		s.log().Info("legacy connection ended without confirming what it read; its messages come again at the next login",
			"end", s.rd.err)
	}
}

// legacyWritten is the highest seq of uid written to this legacy
// connection and not yet acknowledged (it is read before anything written
// later, so a new login on the same connection goes on after it).
func (s *Session) legacyWritten(uid int64) int64 {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.lacks.written[uid]
}

// enqueue hands f to the writer without blocking, starting the writer if
// it is not running. A client whose queue is full reads too slowly: it is
// cut off (its undelivered messages stay in its inbox for the next login).
func (s *Session) enqueue(f outFrame) bool {
	s.wmu.Lock()
	if s.wclosed {
		s.wmu.Unlock()
		return false
	}
	if len(s.queue) >= s.hub.opts.WriteQueue {
		s.wmu.Unlock()
		s.setReason(reasonSlowClient)
		s.log().Warn("slow client: write queue full; disconnecting", "queue", s.hub.opts.WriteQueue)
		s.close()
		return false
	}
	s.queue = append(s.queue, f)
	if !s.writing {
		s.writing = true
		s.writerDone = make(chan struct{})
		go s.writeLoop(s.writerDone)
	}
	s.wmu.Unlock()
	return true
}

// queued is the number of frames waiting for the writer.
func (s *Session) queued() int {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return len(s.queue)
}

// legacy reports whether the connection speaks the legacy dialect: chosen at
// login, else implied by NUL-terminated frames.
func (s *Session) legacy() bool {
	s.mu.Lock()
	d := s.dialect
	s.mu.Unlock()
	if d != dialectUnset {
		return d == dialectLegacy
	}
	return byte(s.term.Load()) == wire.TermNUL
}

// terminate turns an encoded frame into what is written: with the
// connection's terminator, or as one record for a legacy session on TCP
// (legacy.go). A frame too long for the original client is dropped (nil)
// and logged: the encoders keep every legacy frame within the limit.
func (s *Session) terminate(b []byte, legacy bool) []byte {
	if !legacy || !s.records() {
		return append(b, byte(s.term.Load()))
	}
	if len(b) > legacyMaxFrame {
		s.log().Error("legacy frame too long for the original client; dropped", "bytes", len(b))
		return nil
	}
	return appendRecord(make([]byte, 0, legacyRecord), b)
}

// send queues a frame built from m, which has a "msgid" of type wire.MsgID.
func (s *Session) send(m map[string]any, last bool) bool {
	id, _ := m["msgid"].(wire.MsgID)
	data := s.terminate(wire.Marshal(m), s.legacy())
	if data == nil && !last {
		return false
	}
	return s.enqueue(outFrame{data: data, msgid: uint8(msgIndex(id)), last: last})
}

// sendClosing tells the client why its connection is closed, then closes
// it: an error frame for the full dialect, a line the original client
// shows (it ignores every frame it does not print) for the legacy one.
func (s *Session) sendClosing(re wire.MsgID, errno wire.Errno, errmsg string) {
	s.sendClosingAs(s.legacy(), re, errno, errmsg)
}

// sendClosingAs is sendClosing for a session whose dialect was legacy or
// not before its login ended.
func (s *Session) sendClosingAs(legacy bool, re wire.MsgID, errno wire.Errno, errmsg string) {
	if legacy {
		s.enqueue(outFrame{data: s.terminate(legacyNotice(errmsg), true), msgid: uint8(wire.OneChat), last: true})
		return
	}
	s.sendError(re, nil, errno, errmsg, true)
}

// sendError answers a request with an error, in both dialects (the original
// client ignores msgids it does not know). For LOGIN and REG the answer is
// their own ack type; everything else gets a Reply naming the request.
func (s *Session) sendError(re wire.MsgID, reqid []byte, errno wire.Errno, errmsg string, last bool) {
	m := map[string]any{"errno": errno, "errmsg": errmsg}
	switch re {
	case wire.Login:
		m["msgid"] = wire.LoginAck
	case wire.Reg:
		m["msgid"] = wire.RegAck
	case wire.Kicked:
		m["msgid"] = wire.Kicked
	default:
		m["msgid"] = wire.Reply
		if re != 0 && re != wire.Reply {
			m["re"] = re
		}
	}
	if len(reqid) > 0 && !s.legacy() {
		m["reqid"] = rawJSON(reqid)
	}
	s.send(m, last)
}

// sendOK answers a request that succeeded. The legacy dialect gets no answer
// (the original sends none); the full dialect gets a Reply with extra fields.
func (s *Session) sendOK(re wire.MsgID, reqid []byte, extra map[string]any) {
	if s.legacy() {
		return
	}
	m := map[string]any{"msgid": wire.Reply, "re": re, "errno": wire.OK, "errmsg": ""}
	for k, v := range extra {
		m[k] = v
	}
	if len(reqid) > 0 {
		m["reqid"] = rawJSON(reqid)
	}
	s.send(m, false)
}

// requestCtx is the deadline for one service request.
func (s *Session) requestCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.hub.opts.RequestTimeout)
}

// endLogin leaves the logged-in state and stops routing the user's messages
// here. It reports the session that was live, if any.
func (s *Session) endLogin() (uid int64, sid string, ok bool) {
	s.mu.Lock()
	if s.state == stateNone {
		s.mu.Unlock()
		return 0, "", false
	}
	uid, sid = s.uid, s.sid
	wasLive := s.state == stateLive
	s.state = stateNone
	s.uid, s.name, s.sid = 0, "", ""
	s.dialect = dialectUnset
	s.syncing, s.pending, s.overflow, s.delivered, s.kicked = false, nil, false, 0, false
	s.presence = nil
	s.mu.Unlock()
	if wasLive {
		s.hub.m.sessions.Dec()
	}
	s.hub.router.detach(uid, s)
	return uid, sid, wasLive
}

// identity is the logged-in user, if any.
func (s *Session) identity() (uid int64, name string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uid, s.name, s.state == stateLive
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }
