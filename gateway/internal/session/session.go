package session

import (
	"context"

	"github.com/google/uuid"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/natter-chat/natter/gateway/internal/cursor"
	"github.com/natter-chat/natter/gateway/internal/netconn"
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

// maxHeldPushes bounds the live pushes a login holds while it replays;
// past it the replay reads them from the inbox.
const maxHeldPushes = 1024

// maxWaiting bounds the frames that wait behind a login under way.
const maxWaiting = 256

// Session is one client connection's session: its login, dialect and
// delivery. The connection calls Frame for each frame, one at a time and
// never blocking; requests that wait for a service run on goroutines of
// their own (at most one login, one store pipeline, and the other
// requests) and answer through the connection's queue.
type Session struct {
	hub       *Hub
	conn      *netconn.Conn
	id        uint32 // for the log
	transport Transport

	mu     sync.Mutex
	flood  floodBucket
	floods floodNotices
	gen    uint32 // login generation: incremented by every login
	state  loginState
	dial   dialect
	uid    int64
	name   string
	sid    uuid.UUID             // the session's id in the user service
	cur    *cursor.Cursor        // the login's delivery state; nil before
	early  []api.InboxMessage    // pushes that came before cur existed
	lost   bool                  // pushes were dropped before cur existed
	kicked bool                  // replaced by a newer login while this one was in flight
	pres   map[int64]friendState // friend id -> the newest presence notice sent
	chats  *chatQueue            // the ordered store pipeline; nil until the first chat
	wait   []waitingFrame        // frames that came during a login under way
	gate   bool                  // a login or logout is under way: frames wait
	drain  bool                  // frames that waited are being run: new ones wait behind them
	busy   int                   // requests under way (their answers are still to be sent)
	ended  bool                  // reading has ended: the connection closes when busy reaches 0
	tasks  sync.WaitGroup        // goroutines working for this session
}

// waitingFrame is a frame copied to wait for a login to finish.
type waitingFrame struct {
	frame []byte
	term  byte
}

func newSession(h *Hub, c *netconn.Conn, t Transport) *Session {
	return &Session{hub: h, conn: c, id: uint32(h.nextID.Add(1)), transport: t}
}

// log is the connection's logger, built when something is logged (a
// logger per connection would cost memory on every idle connection).
func (s *Session) log() *slog.Logger {
	remote := ""
	if a := s.conn.RemoteAddr(); a != nil {
		remote = a.String()
	}
	return s.hub.log.With("conn_id", strconv.FormatUint(uint64(s.id), 36), "remote", remote)
}

// Frame runs one frame from the client (netconn.Handler). It does not
// block.
func (s *Session) Frame(c *netconn.Conn, frame []byte, term byte) {
	s.mu.Lock()
	if term == wire.TermNUL && s.dial != dialectFull {
		c.SetRecords(true) // the original client: legacy records (netconn)
	}
	if s.gate || s.drain {
		if len(s.wait) >= maxWaiting {
			s.mu.Unlock()
			s.hub.m.rateLimited.Inc()
			s.sendError(wire.Reply, nil, wire.Flood, "too many frames while logging in; slow down", false)
			return
		}
		s.wait = append(s.wait, waitingFrame{append([]byte(nil), frame...), term})
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.handle(frame)
}

// release ends a login's or logout's gate and runs the frames that waited
// for it, in order, until one of them closes the gate again.
func (s *Session) release() {
	s.mu.Lock()
	s.gate = false
	s.drain = true
	for len(s.wait) > 0 && !s.gate {
		w := s.wait[0]
		s.wait[0] = waitingFrame{}
		s.wait = s.wait[1:]
		s.mu.Unlock()
		s.handle(w.frame)
		s.mu.Lock()
	}
	if len(s.wait) == 0 {
		s.wait = nil
	}
	s.drain = false
	s.mu.Unlock()
}

// Refused answers what the client sent that cannot be read as a frame,
// then the connection closes (netconn.Handler).
func (s *Session) Refused(c *netconn.Conn, err error) {
	if rf, ok := err.(interface{ Refusal() (wire.Errno, string) }); ok {
		errno, msg := rf.Refusal()
		s.log().Debug("message refused; closing", "err", err)
		s.sendError(wire.Reply, nil, errno, msg, true)
		return
	}
	s.log().Warn("frame too large; closing", "max", s.hub.opts.MaxFrame)
	s.sendError(wire.Reply, nil, wire.FrameTooLarge, "frame too large; closing", true)
}

// ReadEnded is called when no more frames come (netconn.Handler): the
// login ends (no more pushes are routed here), what is under way is
// answered, then the connection closes.
func (s *Session) ReadEnded(c *netconn.Conn, err error) bool {
	s.mu.Lock()
	s.ended = true
	busy := s.busy > 0 || s.chats != nil && s.chats.pending() > 0
	s.mu.Unlock()
	if c.Closing() {
		return true // a last frame is queued; the connection closes after it
	}
	return busy // answered by whatever finishes last (done)
}

// Closed is called once the connection has ended (netconn.Handler): the
// session hands over its acks and is released.
func (s *Session) Closed(c *netconn.Conn, end netconn.End) {
	for uid, seq := range end.Confirmed {
		s.hub.acks.ack(uid, seq) // what an original client provably read
	}
	if end.Unconfirmed {
		s.log().Info("legacy connection ended without confirming everything it was sent; the rest comes again at the next login",
			"reason", end.Reason.String())
	}
	uid, sid, ok := s.endLogin()
	s.hub.m.closed[end.Reason].Inc()
	switch {
	case ok && s.hub.closing.Load():
		// The gateway is stopping: its leave request ends every session at
		// once; only the acks need handing over (the hub flushes them).
	case ok:
		s.hub.logouts.add(uid, sid, false) // a dropped connection: the client may resume
	}
	go func() {
		s.tasks.Wait()
		s.hub.ended(s)
	}()
}

// start counts a request under way; done ends it, closing the connection
// if reading has ended and it was the last.
func (s *Session) start() {
	s.mu.Lock()
	s.busy++
	if s.busy >= pauseRequests {
		s.conn.Pause() // the client waits (TCP) until some are answered
	}
	s.mu.Unlock()
}

// resumeLocked lets a paused connection's frames come again once what it
// has under way has fallen low enough. Call with s.mu held.
func (s *Session) resumeLocked() {
	if s.busy <= resumeRequests && (s.chats == nil || len(s.chats.q) <= resumeChats) {
		s.conn.Resume()
	}
}

// Requests of a connection under way at once, past which its frames wait.
const (
	pauseRequests  = 64
	resumeRequests = 16
)

func (s *Session) done() {
	s.mu.Lock()
	s.busy--
	last := s.ended && s.busy == 0 && (s.chats == nil || s.chats.pending() == 0)
	s.resumeLocked()
	s.mu.Unlock()
	if last {
		s.conn.SendLast(nil)
	}
}

// goRequest runs fn on a goroutine of its own, counted as a request under
// way.
func (s *Session) goRequest(fn func()) {
	s.start()
	s.tasks.Add(1)
	go func() {
		defer s.tasks.Done()
		defer s.done()
		fn()
	}()
}

// shutdown closes the connection after what is queued, for reason (the
// gateway drains or stops). A full-dialect client is told to reconnect
// elsewhere first; the legacy dialect has no such frame.
func (s *Session) shutdown(reason netconn.Reason) {
	s.conn.SetReason(reason)
	if s.legacy() {
		s.conn.SendLast(nil)
		return
	}
	s.send(map[string]any{"msgid": wire.Reconnect, "errno": wire.GatewayStopping,
		"errmsg": "gateway is shutting down; reconnect"}, true)
}

// legacy reports whether the connection speaks the legacy dialect: chosen at
// login, else implied by NUL-terminated frames.
func (s *Session) legacy() bool {
	s.mu.Lock()
	d := s.dial
	s.mu.Unlock()
	return s.isLegacy(d)
}

func (s *Session) isLegacy(d dialect) bool {
	if d != dialectUnset {
		return d == dialectLegacy
	}
	return s.conn.Term() == wire.TermNUL
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
	uid, sid = s.uid, s.sid.String()
	wasLive := s.state == stateLive
	s.state = stateNone
	s.uid, s.name, s.sid = 0, "", uuid.UUID{}
	s.dial = dialectUnset
	s.cur, s.early, s.lost, s.kicked, s.pres = nil, nil, false, false, nil
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

// live reports whether login generation gen is still the session's.
// Call with s.mu held.
func (s *Session) live(gen uint32) bool {
	return s.state != stateNone && s.gen == gen
}

// floodNotices rate-limits the answers to frames over the flood limit: the
// first is answered at once, the rest at most once a second with a count
// (a burst of refused frames must not fill the client's queue with its own
// error replies). Guarded by Session.mu.
type floodNotices struct {
	dropped int32 // frames dropped since the last notice
	last    int64 // Unix ns of the last notice
}

// floodDropped counts a dropped frame and reports how many to tell the
// client about now (0: not yet).
func (s *Session) floodDropped(now time.Time) int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.floods.dropped++
	return s.floods.due(now)
}

func (f *floodNotices) due(now time.Time) int32 {
	if f.dropped == 0 || now.UnixNano()-f.last < int64(time.Second) {
		return 0
	}
	n := f.dropped
	f.dropped, f.last = 0, now.UnixNano()
	return n
}

// flushFloodNotice sends the count of frames dropped since the last
// notice once a second has passed (the hub's sweep calls it).
func (s *Session) flushFloodNotice(now time.Time) {
	s.mu.Lock()
	n := s.floods.due(now)
	s.mu.Unlock()
	if n > 0 {
		s.sendFloodNotice(0, nil, n)
	}
}

// sendFloodNotice answers frames over the flood limit: errno 109 with the
// number dropped since the last notice.
func (s *Session) sendFloodNotice(re wire.MsgID, reqid []byte, dropped int32) {
	m := map[string]any{"msgid": wire.Reply, "errno": wire.Flood, "errmsg": "too many frames; slow down", "dropped": dropped}
	if re != 0 && re != wire.Reply {
		m["re"] = re
	}
	if len(reqid) > 0 && !s.legacy() {
		m["reqid"] = rawJSON(reqid)
	}
	s.send(m, false)
}

// floodBucket is a token bucket: rate tokens a second, at most burst.
type floodBucket struct {
	tokens float32
	last   int64 // Unix ns of the last refill; 0: full
}

// allow takes a token if there is one. Call with s.mu held.
func (b *floodBucket) allow(now time.Time, rate float64, burst int) bool {
	n := now.UnixNano()
	if b.last == 0 {
		b.tokens, b.last = float32(burst), n
	}
	b.tokens = min(float32(burst), b.tokens+float32(float64(n-b.last)/1e9*rate))
	b.last = n
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
