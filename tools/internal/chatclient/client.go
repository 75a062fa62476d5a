package chatclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/natter-chat/natter/shared/backoff"
	"github.com/natter-chat/natter/shared/wire"
)

// Errors of commands and logins.
var (
	// ErrNotLoggedIn: the command needs a session and there is none.
	ErrNotLoggedIn = errors.New("not logged in")
	// ErrKicked: the account logged in somewhere else, which ended this
	// session; it is not resumed.
	ErrKicked = errors.New("this account logged in somewhere else")
	// ErrOutcomeUnknown: the connection was lost after a command that is
	// not safe to repeat was sent and before its answer came.
	ErrOutcomeUnknown = errors.New("the connection was lost before the answer came; the command may or may not have taken effect")
	// ErrClosed: the client is shutting down.
	ErrClosed = errors.New("client closed")
)

// LoginError is a refused login.
type LoginError struct {
	Errno  wire.Errno
	Errmsg string
}

func (e *LoginError) Error() string { return e.Errmsg }

// Config configures a Client.
type Config struct {
	Addrs      []string      // gateway addresses, tried in turn
	TLS        *tls.Config   // connect with TLS (the gateway's --tls-listen); nil: in clear
	MinBackoff time.Duration // first reconnect delay (plus jitter)
	MaxBackoff time.Duration // the delay doubles up to this
	Timeout    time.Duration // how long one request may wait for its reply
	Heartbeat  time.Duration // a PING this often keeps an idle connection open (gateway --idle-timeout); 0: none
}

// DefaultConfig returns the defaults of `natter chat`.
func DefaultConfig() Config {
	return Config{
		Addrs:      []string{"127.0.0.1:6000"},
		MinBackoff: 200 * time.Millisecond,
		MaxBackoff: 5 * time.Second,
		Timeout:    15 * time.Second,
		Heartbeat:  30 * time.Second,
	}
}

// Message is a chat the client shows: a ONE_CHAT or GROUP_CHAT push.
type Message struct {
	Seq      int64
	Mid      string
	GroupID  int64 // 0 for a one-to-one chat
	FromID   int64
	FromName string
	Text     string
	Time     string
	Raw      []byte // the push as the server sent it
}

// Events receives what happens; its methods run on the client's goroutines
// one at a time per kind and must not call back into the Client.
type Events interface {
	// LoggedIn shows a new session (not a resumed one), before any of
	// its messages.
	LoggedIn(s *Session)
	// Message shows a chat. Once it returns the message counts as shown
	// and is acknowledged: it will not be shown again.
	Message(m Message)
	// Presence reports that a friend came online or went offline.
	Presence(id int64, state string)
	// Connection reports a change of the connection: up (with the address
	// and whether a session was resumed on it) or down (with the reason).
	Connection(s ConnState)
	// SessionEnded reports that the session ended without a LOGINOUT
	// (kicked, or the resume was refused); err says why.
	SessionEnded(err error)
}

// ConnState is a connection change.
type ConnState struct {
	Up      bool
	Addr    string
	Resumed bool          // up: the session was resumed with the resume token
	Session bool          // down: there is a session to resume
	Err     error         // down: why
	Retry   time.Duration // down: the next attempt comes after this
}

// Session is a logged-in user.
type Session struct {
	ID      int64
	Name    string
	Friends []Friend
	Groups  []Group
	Pending int64 // messages waiting at login; they follow as Message events
}

type credentials struct {
	id       int64
	password string // kept to log in again if the resume token is refused
	token    string
}

// Client is a connection manager with a session, an outbox and an acker.
// Run drives it; the other methods may be called from any goroutine.
type Client struct {
	cfg Config
	ev  Events
	log *slog.Logger

	// showMu is held while a message is shown and counted, so that
	// stopShowing sees a final count that covers everything on screen.
	showMu sync.Mutex

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every state change
	cur      *conn         // the connection, nil while there is none
	live     bool          // cur carries the session of creds
	creds    *credentials  // nil while logged out
	shown    int64         // the last seq shown (Events.Message returned)
	acked    int64         // the last seq acknowledged to the server
	gated    bool          // the session is ending: show nothing more (it comes again at the next login)
	outbox   []*pending
	inflight *pending // the command sendLoop has sent and waits for
	closed   bool
	ackKick  chan struct{}
}

// New returns a Client; Run starts it.
func New(cfg Config, ev Events, log *slog.Logger) *Client {
	return &Client{
		cfg: cfg, ev: ev, log: log,
		changed: make(chan struct{}),
		ackKick: make(chan struct{}, 1),
	}
}

// notify wakes everyone waiting for a state change; c.mu is held.
func (c *Client) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Run keeps a connection up until ctx ends, sends the outbox and the
// acknowledgements. Call Close first for a clean end (acknowledgements
// flushed).
func (c *Client) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.sendLoop(ctx) }()
	go func() { defer wg.Done(); c.ackLoop(ctx) }()
	c.connLoop(ctx)
	wg.Wait()
	c.mu.Lock()
	c.closed = true
	box := c.outbox
	c.outbox = nil
	c.notify()
	c.mu.Unlock()
	for _, p := range box {
		p.finish(Result{Err: ErrClosed})
	}
	return nil
}

// connLoop connects, resumes the session if there is one, waits for the
// connection to end, and starts over with backoff.
func (c *Client) connLoop(ctx context.Context) {
	var next int
	b := c.newBackoff()
	for ctx.Err() == nil {
		addr := c.cfg.Addrs[next%len(c.cfg.Addrs)]
		next++
		cn, err := dial(ctx, addr, c.cfg.TLS, c.onFrame)
		if err == nil {
			err = c.resume(ctx, cn)
			if err != nil {
				cn.close()
				c.dropConn(cn)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			pause := b.Next()
			c.ev.Connection(ConnState{Addr: addr, Err: err, Retry: pause, Session: c.LoggedIn()})
			backoff.Sleep(ctx, pause)
			continue
		}
		up := time.Now()
		c.heartbeat(ctx, cn)
		c.dropConn(cn)
		if ctx.Err() != nil {
			return
		}
		if time.Since(up) > 10*time.Second {
			b.Reset() // a connection that worked for a while: retry at once (with jitter)
		}
		pause := b.Next()
		c.ev.Connection(ConnState{Addr: addr, Err: cn.Err(), Retry: pause, Session: c.LoggedIn()})
		backoff.Sleep(ctx, pause)
	}
}

// heartbeat pings on cn every Config.Heartbeat until cn or ctx ends (then
// cn is closed), so that a gateway's idle timeout does not close a
// connection the user is merely quiet on.
func (c *Client) heartbeat(ctx context.Context, cn *conn) {
	var tick <-chan time.Time
	if c.cfg.Heartbeat > 0 {
		t := time.NewTicker(c.cfg.Heartbeat)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-cn.done:
			return
		case <-ctx.Done():
			cn.close()
			return
		case <-tick:
			cn.send(map[string]any{"msgid": wire.Ping}) // a failed write ends cn

		}
	}
}

// dropConn forgets cn if it is the current connection.
func (c *Client) dropConn(cn *conn) {
	c.mu.Lock()
	if c.cur == cn {
		c.cur, c.live = nil, false
		c.notify()
	}
	c.mu.Unlock()
}

// newBackoff returns the reconnect and retry pauses: jittered, so the
// clients of a dead gateway do not all come back at once.
func (c *Client) newBackoff() backoff.Backoff { return backoff.New(c.cfg.MinBackoff, c.cfg.MaxBackoff) }

// resume installs a new connection and, if there is a session, logs in
// again with the resume token (or the password, if the token is refused)
// and the last seq shown.
func (c *Client) resume(ctx context.Context, cn *conn) error {
	c.mu.Lock()
	cr := c.creds
	c.mu.Unlock()
	if cr == nil {
		c.setConn(cn)
		c.ev.Connection(ConnState{Up: true, Addr: cn.addr})
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req := map[string]any{"msgid": wire.Login, "id": cr.id, "token": cr.token, "dialect": "full"}
	s, err := c.login(rctx, cn, cr, req)
	var le *LoginError
	if errors.As(err, &le) && le.Errno == wire.LoginInvalid && c.loggingOut() {
		// A LOGINOUT whose answer was lost revoked the token: the logout
		// is done. (Logging in with the password only to log out would
		// kick the user's newer session elsewhere.)
		c.finishLogout(cr, Result{})
		c.setConn(cn)
		c.ev.Connection(ConnState{Up: true, Addr: cn.addr})
		return nil
	}
	if errors.As(err, &le) && le.Errno == wire.LoginInvalid && cr.password != "" {
		// The token expired: the password still works. (A newer login
		// elsewhere revokes it too, and would be kicked by this one: only
		// where the user gave the password to this client.)
		req = map[string]any{"msgid": wire.Login, "id": cr.id, "password": cr.password, "dialect": "full"}
		s, err = c.login(rctx, cn, cr, req)
	}
	if errors.As(err, &le) && (le.Errno == wire.LoginInvalid || le.Errno == wire.SessionReplaced) {
		if le.Errno == wire.SessionReplaced {
			c.endSession(cr, ErrKicked) // a newer login won while this one was under way
		} else {
			c.endSession(cr, fmt.Errorf("the session could not be resumed: %s", le.Errmsg))
		}
		c.setConn(cn)
		c.ev.Connection(ConnState{Up: true, Addr: cn.addr})
		return nil
	}
	if err != nil {
		return err
	}
	c.ev.Connection(ConnState{Up: true, Addr: cn.addr, Resumed: s != nil})
	return nil
}

// setConn makes cn the current connection, without a session.
func (c *Client) setConn(cn *conn) {
	c.mu.Lock()
	c.cur, c.live = cn, false
	c.notify()
	c.mu.Unlock()
}

// loggingOut reports whether the command in flight is a LOGINOUT.
func (c *Client) loggingOut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inflight != nil && c.inflight.cmd.logout
}

// login sends a LOGIN on cn for cr: a fresh login (no session yet) or the
// resume of cr's session. On success the session's state is set on the
// connection's reader goroutine, before any push that follows the ack. A
// login given up on (ctx) whose ack comes late closes the connection
// instead of half-logging in.
func (c *Client) login(ctx context.Context, cn *conn, cr *credentials, req map[string]any) (*Session, error) {
	var (
		s         *Session
		abandoned bool
	)
	c.mu.Lock()
	fresh := c.creds == nil
	req["lastseq"] = c.shown
	c.mu.Unlock()
	ch, err := cn.request(req, func(f *frame) {
		if f.MsgID != wire.LoginAck || f.Errno != wire.OK {
			return
		}
		c.mu.Lock()
		mine := (fresh && c.creds == nil) || (!fresh && c.creds == cr)
		if abandoned || !mine {
			// Given up, or the session ended meanwhile: this login must
			// not take effect.
			c.mu.Unlock()
			cn.fail(errors.New("login given up"))
			return
		}
		if f.Token != "" {
			cr.token = f.Token
		}
		c.creds = cr
		c.cur, c.live, c.gated = cn, true, false
		c.shown = max(c.shown, f.LastSeq)
		c.acked = c.shown // the gateway stored lastseq as acknowledged
		s = &Session{ID: f.ID, Name: f.Name, Friends: f.Friends, Groups: f.Groups, Pending: f.Pending}
		c.notify()
		c.kickAcks()
		c.mu.Unlock()
		if fresh {
			// Still on the reader: before any message of the session.
			c.ev.LoggedIn(s)
		}
	})
	if err != nil {
		return nil, err
	}
	var f *frame
	select {
	case f = <-ch:
	case <-ctx.Done():
		c.mu.Lock()
		abandoned = s == nil
		c.mu.Unlock()
		if abandoned {
			return nil, fmt.Errorf("login: %w", ctx.Err())
		}
		f = <-ch // the ack was handled just now
	}
	if f == nil {
		return nil, fmt.Errorf("login: %w: %v", errConnLost, cn.Err())
	}
	if f.Errno != wire.OK {
		return nil, &LoginError{Errno: f.Errno, Errmsg: f.Errmsg}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s == nil {
		return nil, errors.New("login: the session ended meanwhile")
	}
	return s, nil
}

// waitConn waits for a connection; live: one carrying the session.
func (c *Client) waitConn(ctx context.Context, live bool) (*conn, error) {
	for {
		c.mu.Lock()
		cn, ok, changed, closed, loggedIn := c.cur, c.live, c.changed, c.closed, c.creds != nil
		c.mu.Unlock()
		switch {
		case closed:
			return nil, ErrClosed
		case live && !loggedIn:
			return nil, ErrNotLoggedIn
		case cn != nil && (ok || !live):
			return cn, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Register creates an account and returns its id.
func (c *Client) Register(ctx context.Context, name, password string) (int64, error) {
	cn, err := c.waitConn(ctx, false)
	if err != nil {
		return 0, err
	}
	f, err := cn.call(ctx, map[string]any{"msgid": wire.Reg, "name": name, "password": password})
	if err != nil {
		return 0, err
	}
	if f.Errno != wire.OK {
		if f.Errno == wire.RegFailed {
			return 0, &LoginError{Errno: f.Errno, Errmsg: "name is already exist"}
		}
		return 0, &LoginError{Errno: f.Errno, Errmsg: f.Errmsg}
	}
	return f.ID, nil
}

// Login logs in with a password; once it succeeded, lost connections are
// replaced and the session resumed until Logout.
func (c *Client) Login(ctx context.Context, id int64, password string) (*Session, error) {
	for {
		cn, err := c.waitConn(ctx, false)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		if c.creds != nil {
			c.mu.Unlock()
			return nil, errors.New("already logged in")
		}
		c.shown, c.acked = 0, 0 // a new login: the server knows what was acknowledged
		c.mu.Unlock()
		cr := &credentials{id: id, password: password}
		s, err := c.login(ctx, cn, cr, map[string]any{"msgid": wire.Login, "id": id, "password": password, "dialect": "full"})
		if errors.Is(err, errConnLost) {
			continue // the connection went away under the login: try the next one
		}
		return s, err
	}
}

// endSession forgets the session cr (if it is still the current one),
// fails the queued commands (the one in flight is left to sendLoop, which
// has or will have its answer), and tells Events unless err is nil.
func (c *Client) endSession(cr *credentials, err error) {
	c.mu.Lock()
	if c.creds != cr || cr == nil {
		c.mu.Unlock()
		return
	}
	c.creds, c.live = nil, false
	var box []*pending
	for _, p := range c.outbox {
		if p != c.inflight {
			box = append(box, p)
		}
	}
	c.outbox = c.outbox[:0]
	if c.inflight != nil {
		c.outbox = append(c.outbox, c.inflight)
	}
	c.notify()
	c.mu.Unlock()
	for _, p := range box {
		p.finish(Result{Err: ErrNotLoggedIn})
	}
	if err != nil {
		c.ev.SessionEnded(err)
	}
}

// finishLogout ends the session cr after its LOGINOUT and then reports r
// for the LOGINOUT in flight.
func (c *Client) finishLogout(cr *credentials, r Result) {
	c.mu.Lock()
	p := c.inflight
	c.mu.Unlock()
	c.endSession(cr, nil)
	if p != nil && p.cmd.logout {
		c.pop(p, r)
	}
}

// LoggedIn reports whether there is a session.
func (c *Client) LoggedIn() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.creds != nil
}

// onFrame handles everything that is not a reply: pushes, presence,
// KICKED, errors without a reqid. It runs on cn's reader goroutine.
func (c *Client) onFrame(cn *conn, f *frame) {
	switch f.MsgID {
	case wire.OneChat, wire.GroupChat:
		c.showMu.Lock()
		defer c.showMu.Unlock()
		c.mu.Lock()
		if c.cur != cn || !c.live || c.gated {
			c.mu.Unlock()
			return // a stale connection's push, or the session is ending; a later login replays it
		}
		shown := c.shown
		c.mu.Unlock()
		if f.Seq <= shown {
			return // shown already (a replay overlapping what we had)
		}
		if f.Seq > shown+1 {
			// The gateway skips entries it cannot deliver (pruned or
			// undecodable); everything it has comes in order.
			c.log.Warn("messages skipped by the server", "from", shown+1, "to", f.Seq-1)
		}
		m := Message{Seq: f.Seq, Mid: f.Mid, FromID: f.ID, FromName: f.Name, Raw: f.Raw}
		if f.MsgID == wire.GroupChat {
			m.GroupID = f.GroupID
		}
		m.Text, m.Time = text(f.Msg), text(f.Time)
		c.ev.Message(m)
		c.mu.Lock()
		c.shown = f.Seq
		c.mu.Unlock()
		c.kickAcks()
	case wire.Presence:
		c.ev.Presence(f.ID, f.State)
	case wire.Kicked:
		c.mu.Lock()
		cr := c.creds
		stale := c.cur != cn
		c.mu.Unlock()
		if !stale {
			c.endSession(cr, ErrKicked)
		}
	default:
		if f.Errno != wire.OK {
			// An error that answers no request: the gateway is stopping,
			// our session expired, or a frame was refused. The connection
			// usually closes next; the session is resumed on another one.
			c.log.Info("gateway error", "errno", f.Errno, "errmsg", f.Errmsg)
		}
	}
}

func (c *Client) kickAcks() {
	select {
	case c.ackKick <- struct{}{}:
	default:
	}
}

// ackLoop acknowledges what was shown, as it is shown (acks coalesce
// while one is being written).
func (c *Client) ackLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.ackKick:
		}
		c.mu.Lock()
		cn, live, shown, acked := c.cur, c.live, c.shown, c.acked
		c.mu.Unlock()
		if !live || shown <= acked {
			continue
		}
		if err := cn.send(map[string]any{"msgid": wire.Ack, "seq": shown}); err != nil {
			continue // the next login carries lastseq
		}
		c.mu.Lock()
		if c.cur == cn {
			c.acked = max(c.acked, shown)
		}
		c.mu.Unlock()
	}
}

// stopShowing ends the showing of messages for this session (what comes
// from now on is shown at the next login) and returns the last seq shown.
func (c *Client) stopShowing() int64 {
	c.showMu.Lock()
	defer c.showMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gated = true
	return c.shown
}

// resumeShowing undoes stopShowing (a LOGINOUT that failed).
func (c *Client) resumeShowing() {
	c.mu.Lock()
	c.gated = false
	c.mu.Unlock()
}

// Finish stops showing messages, acknowledges everything shown, and waits
// until the server has stored the acknowledgement. Call it before ending
// the program.
func (c *Client) Finish(ctx context.Context) error {
	shown := c.stopShowing()
	c.mu.Lock()
	cn, live := c.cur, c.live
	c.mu.Unlock()
	if !live {
		// No connection: what the acker could not send yet is shown again
		// at the next login.
		return nil
	}
	f, err := cn.call(ctx, map[string]any{"msgid": wire.Ack, "seq": shown})
	if err != nil {
		return fmt.Errorf("acknowledge: %w", err)
	}
	if f.Errno != wire.OK {
		return fmt.Errorf("acknowledge: errno %d: %s", f.Errno, f.Errmsg)
	}
	return nil
}
