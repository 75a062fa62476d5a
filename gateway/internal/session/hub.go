// Package session runs client connections on a gateway: framing, the two
// dialects, login, routing of a user's messages from NATS to their socket,
// and the delivery protocol (replay after the acknowledged seq, then live
// messages, in order, none twice). It never touches the database: every
// state change is a request to a service over NATS.
package session

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/subject"
	"github.com/natter-chat/natter/shared/wire"
)

// Options tune a Hub.
type Options struct {
	GatewayID      string
	MaxFrame       int           // bytes; larger frames get an error and the connection is closed
	WriteQueue     int           // frames queued per connection before it counts as a slow client
	WriteTimeout   time.Duration // a write that takes longer cuts the client off
	IdleTimeout    time.Duration // close a connection that sends nothing for this long; 0 = never
	RequestTimeout time.Duration // deadline of each service request
	AckInterval    time.Duration // how often batched delivery acks are sent
	FloodRate      float64       // frames per second a connection may send on average
	FloodBurst     int           // ... and in a burst
	ReplayPage     int           // inbox entries fetched per request during replay
	LegacyGap      time.Duration // at least this long between two records to a legacy client on TCP
	MaxConns       int           // connections held at most; more are refused with Reconnect/ServerFull; 0 = no limit
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

	fetchSlots chan struct{}

	m *Metrics

	stop     chan struct{}
	bg       sync.WaitGroup
	closing  atomic.Bool // stopping: sessions are ended by the gateway's leave
	draining atomic.Bool // no new connections; each is closed and released in turn

	mu       sync.Mutex
	sessions map[*Session]struct{}
	conns    sync.WaitGroup
}

// NewHub starts the hub's dispatcher and ack flusher.
func NewHub(nc *nats.Conn, opts Options, log *slog.Logger) *Hub {
	h := &Hub{
		opts:       opts,
		nc:         nc,
		log:        log,
		m:          opts.Metrics,
		router:     newRouter(nc, log, 1<<16),
		acks:       newAcker(nc, opts.Metrics, log, opts.AckInterval, opts.RequestTimeout),
		users:      newUserCache(nc, opts.Metrics, 1<<20),
		fetchSlots: make(chan struct{}, 64),
		stop:       make(chan struct{}),
		sessions:   map[*Session]struct{}{},
	}
	h.logouts = newLogouts(nc, opts.Metrics, log, h.acks, opts.AckInterval, opts.RequestTimeout)
	h.bg.Add(3)
	go func() { defer h.bg.Done(); h.router.run(h.stop) }()
	go func() { defer h.bg.Done(); h.acks.run(h.stop) }()
	go func() { defer h.bg.Done(); h.logouts.run(h.stop) }()
	return h
}

// Serve runs one client connection until it ends. A connection over
// MaxConns is told the server is full and closed. Every transport is
// served by the same code: a WebSocket connection comes as a net.Conn
// whose reads and writes are frames (gateway/wsconn); t only
// labels the metrics.
func (h *Hub) Serve(conn net.Conn, t Transport) {
	h.m.accepted.Inc()
	h.m.taccepted[t].Inc()
	h.mu.Lock()
	if h.closing.Load() || h.draining.Load() {
		h.mu.Unlock()
		conn.Close()
		h.m.closed[reasonDrain].Inc()
		return
	}
	h.conns.Add(1)
	defer h.conns.Done()
	if h.opts.MaxConns > 0 && len(h.sessions) >= h.opts.MaxConns {
		h.mu.Unlock()
		h.refuse(conn)
		return
	}
	s := newSession(h, conn, t)
	h.sessions[s] = struct{}{}
	h.mu.Unlock()
	h.m.conns.Inc()
	h.m.tconns[t].Inc()
	defer func() {
		h.mu.Lock()
		delete(h.sessions, s)
		h.mu.Unlock()
		h.m.conns.Dec()
		h.m.tconns[t].Dec()
	}()
	s.run()
}

// refuse tells a connection over MaxConns to try another gateway and
// closes it. The client has said nothing yet: the frame ends with '\n'.
func (h *Hub) refuse(conn net.Conn) {
	h.m.closed[reasonConnLimit].Inc()
	h.log.Debug("connection refused: server full", "remote", conn.RemoteAddr().String(), "max_conns", h.opts.MaxConns)
	f := append(wire.Marshal(map[string]any{"msgid": wire.Reconnect, "errno": wire.ServerFull, "errmsg": "server full"}), wire.TermNewline)
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write(f); err == nil {
		h.m.framesOut[wire.Reconnect].Inc()
	}
	conn.Close()
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
			s.setReason(reasonExpired)
			s.sendClosing(wire.Reply, wire.SessionExpired, "session expired; log in again")
		}
	}
}

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
		gen uint64
		uid int64
		sid string
	}
	var live []liveSession
	for _, s := range h.all() {
		s.mu.Lock()
		if s.state == stateLive {
			live = append(live, liveSession{s, s.gen, s.uid, s.sid})
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
		err := h.m.Call(rctx, h.nc, subject.UserSessions,
			api.SessionsRequest{GatewayID: h.opts.GatewayID, AfterUserID: after, Limit: api.MaxSessionsPage}, &resp)
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

func (h *Hub) all() []*Session {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*Session, 0, len(h.sessions))
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
		s.shutdown(reasonDrain)
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
// sends the remaining acks and stops the hub's goroutines.
func (h *Hub) Close(ctx context.Context) {
	h.mu.Lock()
	h.closing.Store(true) // under mu: Serve registers nothing after this
	h.mu.Unlock()
	for _, s := range h.all() {
		s.shutdown(reasonStop)
	}
	done := make(chan struct{})
	go func() { h.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		h.log.Warn("sessions did not end before the shutdown deadline")
	}
	if err := h.acks.flush(ctx); err != nil {
		h.log.Warn("final ack flush", "err", err)
	}
	close(h.stop)
	h.bg.Wait()
}
