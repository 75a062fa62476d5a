// Package session is the gateway's session layer: what a client
// connection means once its bytes are frames. A Session is one
// connection's login, dialect and delivery; its handlers turn the client's
// requests into NATS requests to the services and their answers into
// frames; the router hands it the messages published on its user's subject.
// It never touches the database.
//
// The layers below and beside it, each in a package of its own with one-way
// dependencies:
//
//	netconn  the socket: framing, the write queue (bounded in bytes), event
//	         loops for TCP, goroutines for TLS/WebSocket, legacy records
//	cursor   the delivery state of a login: delivered, held pushes, gap
//	         fill and replay, with no I/O
//
// The life of a frame: netconn reads it and calls Session.Frame (on an
// event loop: it must not block); the session answers a PING or an ACK at
// once, queues a chat in the connection's ordered store pipeline (one store
// in flight, answered in order), and runs any other request on a goroutine
// of its own while it is in flight. Nothing runs for an idle connection.
//
// Lock order: Session.mu before netconn.Conn's own lock (Session.mu is held
// while frames are handed to the connection, so that live pushes and replay
// keep their order); router.mu is never held while calling a session.
package session

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/gateway/internal/netconn"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/natsreq"
	"github.com/natter-chat/natter/shared/subject"
	"github.com/natter-chat/natter/shared/wire"
)

// Options tune a Hub.
type Options struct {
	GatewayID      string
	MaxFrame       int           // bytes; larger frames get an error and the connection is closed
	WriteLimit     int           // bytes queued per connection before it counts as a slow client
	WriteTimeout   time.Duration // a client that takes nothing for this long is cut off
	IdleTimeout    time.Duration // close a connection that sends nothing for this long; 0 = never
	RequestTimeout time.Duration // deadline of each service request
	AckInterval    time.Duration // how often batched delivery acks are sent
	FloodRate      float64       // frames per second a connection may send on average
	FloodBurst     int           // ... and in a burst
	ReplayPage     int           // inbox entries fetched per request during replay
	LegacyGap      time.Duration // at least this long between two records to an original client
	MaxConns       int           // connections held at most; more are refused with Reconnect/ServerFull; 0 = no limit
	Loops          int           // event loops for TCP connections; 0: one per CPU
	Metrics        *Metrics      // required
}

// Hub owns every connection of one gateway and the machinery they share.
type Hub struct {
	opts    Options
	nc      *nats.Conn
	log     *slog.Logger
	router  *router
	acks    *acker
	logouts *logouts
	users   *userCache
	c       *caller
	loop    *netconn.Loop
	stream  *netconn.Stream

	fetchSlots chan struct{}
	nextID     atomic.Uint64 // connection ids, for the log

	m *Metrics

	stop     chan struct{}
	bg       sync.WaitGroup
	closing  atomic.Bool // stopping: sessions are ended by the gateway's leave
	draining atomic.Bool // no new connections; each is closed and released in turn

	mu       sync.Mutex
	sessions map[*Session]struct{}
	conns    sync.WaitGroup
}

// NewHub starts the hub's event loops, dispatcher, ack flusher and timers.
func NewHub(nc *nats.Conn, opts Options, log *slog.Logger) (*Hub, error) {
	copts := netconn.Options{
		MaxFrame:     opts.MaxFrame,
		WriteLimit:   opts.WriteLimit,
		WriteTimeout: opts.WriteTimeout,
		IdleTimeout:  opts.IdleTimeout,
		LegacyGap:    opts.LegacyGap,
	}
	req, err := natsreq.New(nc, natsreq.Options{Timeout: opts.RequestTimeout})
	if err != nil {
		return nil, fmt.Errorf("requester: %w", err)
	}
	loop, err := netconn.NewLoop(copts, opts.Loops, log)
	if err != nil {
		req.Close()
		return nil, err
	}
	c := &caller{req: req, m: opts.Metrics}
	h := &Hub{
		c:          c,
		opts:       opts,
		nc:         nc,
		log:        log,
		m:          opts.Metrics,
		router:     newRouter(nc, log, 1<<16),
		acks:       newAcker(c, opts.Metrics, log, opts.AckInterval, opts.RequestTimeout),
		users:      newUserCache(1 << 20),
		loop:       loop,
		stream:     netconn.NewStream(copts, log),
		fetchSlots: make(chan struct{}, 64),
		stop:       make(chan struct{}),
		sessions:   map[*Session]struct{}{},
	}
	h.logouts = newLogouts(c, opts.Metrics, log, h.acks, opts.AckInterval, opts.RequestTimeout)
	h.bg.Add(4)
	go func() { defer h.bg.Done(); h.router.run(h.stop) }()
	go func() { defer h.bg.Done(); h.acks.run(h.stop) }()
	go func() { defer h.bg.Done(); h.logouts.run(h.stop) }()
	go func() { defer h.bg.Done(); h.sweep(h.stop) }()
	return h, nil
}

// Serve serves one client connection. A TCP connection is handed to an
// event loop and Serve returns at once; any other (a WebSocket, whose reads
// and writes are frames: gateway/wsconn) is served on goroutines and Serve
// returns when it has ended. A connection over MaxConns is told the server
// is full and closed. t labels the metrics.
func (h *Hub) Serve(conn net.Conn, t Transport) {
	h.m.accepted.Inc()
	h.m.taccepted[t].Inc()
	h.mu.Lock()
	if h.closing.Load() || h.draining.Load() {
		h.mu.Unlock()
		conn.Close()
		h.m.closed[netconn.ReasonDrain].Inc()
		return
	}
	if h.opts.MaxConns > 0 && len(h.sessions) >= h.opts.MaxConns {
		h.mu.Unlock()
		h.refuse(conn)
		return
	}
	h.conns.Add(1)
	h.mu.Unlock()
	mk := func(c *netconn.Conn) netconn.Handler {
		s := newSession(h, c, t)
		h.mu.Lock()
		h.sessions[s] = struct{}{}
		h.mu.Unlock()
		h.m.conns.Inc()
		h.m.tconns[t].Inc()
		return s
	}
	if _, isTCP := conn.(*net.TCPConn); isTCP && t == TCP {
		if err := h.loop.Serve(conn, mk); err != nil {
			h.log.Warn("serve connection", "err", err)
		}
		return
	}
	h.stream.Serve(conn, mk)
}

// ended is called by a session when its connection has ended.
func (h *Hub) ended(s *Session) {
	h.mu.Lock()
	delete(h.sessions, s)
	h.mu.Unlock()
	h.m.conns.Dec()
	h.m.tconns[s.transport].Dec()
	h.conns.Done()
}

// refuse tells a connection over MaxConns to try another gateway and
// closes it. The client has said nothing yet: the frame ends with '\n'.
func (h *Hub) refuse(conn net.Conn) {
	h.m.closed[netconn.ReasonConnLimit].Inc()
	h.log.Debug("connection refused: server full", "remote", conn.RemoteAddr().String(), "max_conns", h.opts.MaxConns)
	o := wire.Object{}
	o.SetInt("msgid", int64(wire.Reconnect))
	o.SetInt("errno", int64(wire.ServerFull))
	o.SetString("errmsg", "server full")
	f := append(o.Encode(), wire.TermNewline)
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write(f); err == nil {
		h.m.framesOut[wire.Reconnect].Inc()
	}
	conn.Close()
}

// sweep runs every connection's timers (idle, write stalls, half-closes)
// about once a second.
func (h *Hub) sweep(stop <-chan struct{}) {
	if h.opts.IdleTimeout == 0 && h.opts.WriteTimeout == 0 {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var all []*Session // reused: an idle gateway allocates nothing here
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			all = h.appendAll(all[:0])
			for _, s := range all {
				s.conn.Sweep(now)
				s.flushFloodNotice(now)
			}
			clear(all)
		}
	}
}

// ExpireSessions closes every logged-in connection: the user service ended
// this gateway's sessions when its presence lease expired (the gateway was
// cut off from NATS for longer than its TTL), so they may have logged in
// elsewhere since. Clients log in again.
func (h *Hub) ExpireSessions() {
	for _, s := range h.all() {
		s.mu.Lock()
		in := s.state != stateNone
		s.mu.Unlock()
		if in {
			s.conn.SetReason(netconn.ReasonExpired)
			s.sendClosing(wire.Reply, wire.SessionExpired, "session expired; log in again")
		}
	}
}

// Reconnected is called after the NATS connection reconnected: requests
// whose request or reply may have been lost with the old connection are
// sent again at once, and every session checks its inbox (Resync).
func (h *Hub) Reconnected() {
	h.c.req.Reconnected()
	h.Resync()
}

// Inbox is the subject the hub's requests are answered on: a slow consumer
// there loses nothing (lost replies are sent again), so it needs no
// resync.
func (h *Hub) Inbox() string { return h.c.req.Inbox() }

// Resync makes every live session check its inbox for messages whose push
// was lost (NATS drops messages while a connection reconnects).
func (h *Hub) Resync() {
	for _, s := range h.all() {
		s.resync()
	}
}

// Reconcile closes the connections whose session the user service no longer
// records for this gateway: a newer login replaced them while this gateway
// was away from NATS, and the kick published then was lost.
func (h *Hub) Reconcile(ctx context.Context) error {
	// Take the live sessions first: their claims committed before the pages
	// below are read, so a missing one was really replaced.
	type liveSession struct {
		s   *Session
		gen uint32
		uid int64
		sid string
	}
	var live []liveSession
	for _, s := range h.all() {
		s.mu.Lock()
		if s.state == stateLive {
			live = append(live, liveSession{s, s.gen, s.uid, s.sid.String()})
		}
		s.mu.Unlock()
	}
	if len(live) == 0 {
		return nil
	}
	recorded := make(map[int64]string, len(live))
	for after := int64(0); ; {
		var resp api.SessionsResponse
		rctx, cancel := context.WithTimeout(ctx, h.opts.RequestTimeout)
		err := h.c.call(rctx, subject.UserSessions,
			api.SessionsRequest{GatewayID: h.opts.GatewayID, AfterUserID: after, Limit: api.MaxSessionsPage}, &resp, true)
		cancel()
		if err != nil {
			return fmt.Errorf("reconcile sessions: %w", err)
		}
		for _, r := range resp.Sessions {
			recorded[r.UserID] = r.SessionID
		}
		if !resp.More || len(resp.Sessions) == 0 {
			break
		}
		after = resp.Sessions[len(resp.Sessions)-1].UserID
	}
	closed := 0
	for _, l := range live {
		if recorded[l.uid] == l.sid {
			continue
		}
		l.s.mu.Lock()
		current := l.s.live(l.gen)
		l.s.mu.Unlock()
		if current {
			l.s.onKick(l.uid, l.sid)
			closed++
		}
	}
	if closed > 0 {
		h.log.Warn("closed sessions replaced while NATS was away", "sessions", closed)
	}
	return nil
}

func (h *Hub) all() []*Session { return h.appendAll(nil) }

// appendAll appends every session to out.
func (h *Hub) appendAll(out []*Session) []*Session {
	h.mu.Lock()
	defer h.mu.Unlock()
	out = slices.Grow(out, len(h.sessions))
	for s := range h.sessions {
		out = append(out, s)
	}
	return out
}

// Drain is the lame duck: it takes no new connections and closes the open
// ones spread evenly over window, each the way a client's disconnect is
// (what is queued is written first, acks are handed over, the session is
// released so the client can resume on another gateway at once). Full-
// dialect clients are told to reconnect elsewhere first. Drain returns
// when every connection has ended, or when ctx ends. Close follows it.
func (h *Hub) Drain(ctx context.Context, window time.Duration) {
	h.mu.Lock()
	h.draining.Store(true) // under mu: Serve registers nothing after this
	h.mu.Unlock()
	h.m.SetDraining(true)
	sessions := h.all()
	h.log.Info("draining connections", "conns", len(sessions), "window", window)
	start := time.Now()
	for i, s := range sessions {
		due := start.Add(window * time.Duration(i) / time.Duration(len(sessions)))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				h.log.Warn("drain deadline reached; the remaining connections are closed at once", "conns", len(sessions)-i)
				return
			}
		}
		s.shutdown(netconn.ReasonDrain)
	}
	done := make(chan struct{})
	go func() { h.conns.Wait(); close(done) }()
	select {
	case <-done:
		h.log.Info("drained", "conns", len(sessions), "took", time.Since(start).Round(time.Millisecond))
	case <-ctx.Done():
		h.log.Warn("connections did not end before the drain deadline")
	}
}

// Close tells every connection the gateway is stopping, closes them, waits
// for their sessions to end (each hands over its acks and logs out), then
// sends the remaining acks and stops the hub's goroutines and event loops.
func (h *Hub) Close(ctx context.Context) {
	h.mu.Lock()
	h.closing.Store(true) // under mu: Serve registers nothing after this
	h.mu.Unlock()
	for _, s := range h.all() {
		s.shutdown(netconn.ReasonStop)
	}
	done := make(chan struct{})
	go func() { h.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		h.log.Warn("sessions did not end before the shutdown deadline")
		for _, s := range h.all() {
			s.conn.Close()
		}
	}
	if err := h.acks.flush(ctx); err != nil {
		h.log.Warn("final ack flush", "err", err)
	}
	close(h.stop)
	h.bg.Wait()
	if err := h.loop.Stop(); err != nil {
		h.log.Warn("stop event loops", "err", err)
	}
	h.c.req.Close()
}

// Call sends a service request on the gateway's behalf (the presence
// lease, the leave at stop), through the hub's requester.
func (h *Hub) Call(ctx context.Context, subj string, req, resp any, idempotent bool) error {
	return h.c.call(ctx, subj, req, resp, idempotent)
}
