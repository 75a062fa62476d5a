package session

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
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
	last   bool // close the connection after this frame
}

// Session is one client connection. A reader goroutine (run) handles the
// client's frames in order; a writer goroutine owns the socket's write side
// and drains a bounded queue, so nothing else ever blocks on the client. The
// writer runs only while there is something to write: an idle connection
// costs one parked reader goroutine and a few small structures.
type Session struct {
	hub     *Hub
	conn    net.Conn
	connID  string
	done    chan struct{}
	once    sync.Once
	term    atomic.Uint32
	limiter *rate.Limiter
	tasks   sync.WaitGroup // catch-up goroutines started by live pushes

	wmu        sync.Mutex
	queue      []outFrame    // frames for the writer, at most hub.opts.WriteQueue
	writing    bool          // a writer goroutine is running
	writerDone chan struct{} // closed when the running writer ends
	wclosed    bool          // the connection is closed: no writer starts any more

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

func newSession(h *Hub, conn net.Conn) *Session {
	s := &Session{
		hub:     h,
		conn:    conn,
		connID:  uuid.NewString()[:8],
		done:    make(chan struct{}),
		limiter: rate.NewLimiter(rate.Limit(h.opts.FloodRate), h.opts.FloodBurst),
	}
	s.term.Store(uint32(wire.TermNewline))
	return s
}

// log is the connection's logger, built when something is logged (a
// logger per connection would cost memory on every idle connection).
func (s *Session) log() *slog.Logger {
	return s.hub.log.With("conn_id", s.connID, "remote", s.conn.RemoteAddr().String())
}

func (s *Session) run() {
	s.readLoop()

	// The client is gone or the connection is closing: stop routing, let the
	// writer finish what is queued, hand over acks, release the session.
	uid, sid, ok := s.endLogin()
	s.enqueue(outFrame{last: true})
	s.waitWriter()
	s.close()
	s.tasks.Wait()
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
	select {
	case <-done:
	case <-time.After(s.hub.opts.WriteTimeout):
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

// shutdown asks the client to reconnect elsewhere and closes the connection.
func (s *Session) shutdown() {
	s.sendError(wire.Reply, nil, wire.GatewayStopping, "gateway is shutting down; reconnect", true)
}

func (s *Session) readLoop() {
	dec := wire.NewDecoder(s.conn, s.hub.opts.MaxFrame)
	for {
		if s.hub.opts.IdleTimeout > 0 {
			s.conn.SetReadDeadline(time.Now().Add(s.hub.opts.IdleTimeout))
		}
		frame, term, err := dec.Next()
		if err != nil {
			if errors.Is(err, wire.ErrFrameTooLarge) {
				s.log().Warn("frame too large; closing", "max", s.hub.opts.MaxFrame)
				s.sendError(wire.Reply, nil, wire.FrameTooLarge, "frame too large; closing", true)
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log().Debug("read", "err", err)
			}
			return
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
	for {
		legacy := s.legacy()
		s.wmu.Lock()
		if len(s.queue) == 0 || s.wclosed {
			s.writing = false
			s.queue = nil // an idle connection keeps no queue
			s.wmu.Unlock()
			return
		}
		batch, acks = batch[:0], acks[:0]
		n, last := 0, false
		for n < len(s.queue) && !last && (n == 0 || (!legacy && len(batch) < maxBatch)) {
			f := s.queue[n]
			batch = append(batch, f.data...)
			if f.ackUID > 0 {
				acks = append(acks, [2]int64{f.ackUID, f.ackSeq})
			}
			last = f.last
			s.queue[n] = outFrame{}
			n++
		}
		s.queue = s.queue[n:]
		s.wmu.Unlock()

		if len(batch) > 0 {
			s.conn.SetWriteDeadline(time.Now().Add(s.hub.opts.WriteTimeout))
			if _, err := s.conn.Write(batch); err != nil {
				s.log().Debug("write", "err", err)
				s.close()
				continue // ends the loop: the queue is closed
			}
		}
		for _, a := range acks {
			s.hub.acks.ack(a[0], a[1])
		}
		if last {
			s.close()
			continue
		}
		if cap(batch) > 2*maxBatch {
			batch = nil
		}
	}
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

// frame encodes v with the connection's terminator.
func (s *Session) frame(v any) []byte {
	return append(wire.Marshal(v), byte(s.term.Load()))
}

func (s *Session) send(v any, last bool) bool {
	return s.enqueue(outFrame{data: s.frame(v), last: last})
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
