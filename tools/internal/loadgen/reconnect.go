package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/natter-chat/natter/shared/backoff"
	"github.com/natter-chat/natter/shared/wire"
)

// Reconnect mode (Config.Reconnect) keeps every simulated user's session
// through lost connections, as a real client does (compare
// tools/internal/chatclient):
//
//   - a keeper goroutine per user waits for its connection to end (EOF,
//     reset, an error frame after which the gateway closes, a reply that
//     did not come within Config.ReplyTimeout), then dials the next
//     address with jittered backoff and logs in again with the resume
//     token and lastseq = the last seq the user processed; a refused token
//     falls back to the password, counted;
//   - each sender has an outbox: its messages not acknowledged yet, in
//     order. A flusher goroutine sends the oldest, waits for its answer and
//     only then sends the next (a real client's outbox: a message retried
//     after an errno could otherwise be overtaken by the next one), resends
//     after a lost connection with the same cid (the server answers a cid
//     it stored with duplicate:true, which counts as acknowledged), retries
//     an errno answer after a short backoff, and gives a message up once it
//     has been waiting Config.GiveUp (counted; it fails the run);
//   - receivers drop seqs they already processed (Recipient.Push), so what
//     the checker sees is what a real client would show;
//   - a watchdog drops connections whose oldest request waited longer
//     than Config.ReplyTimeout and pings those with nothing outstanding,
//     so that a dead connection is noticed without traffic.

const (
	reconnectMinBackoff = 100 * time.Millisecond // the first reconnect waits 50-100 ms
	reconnectMaxBackoff = 2 * time.Second        // doubling up to this
	retryMinBackoff     = 100 * time.Millisecond // after an errno answer to a send
	retryMaxBackoff     = time.Second
	pingIdle            = 5 * time.Second        // a connection with nothing outstanding is pinged this often
	watchEvery          = 250 * time.Millisecond // the watchdog's sweep
	usersPerWatcher     = 512                    // connections one watchdog goroutine looks after
)

// errReplyTimeout ends a connection whose request was not answered in time.
var errReplyTimeout = errors.New("no reply within the reply timeout")

// ReconnectReport is what reconnect mode adds to a run's report.
type ReconnectReport struct {
	// Sessions back after a lost connection: Resumed with the resume
	// token, PasswordRelogins with the password after the token was
	// refused (TokensRefused: every refusal).
	Reconnects       int64 `json:"reconnects"`
	Resumed          int64 `json:"resumed"`
	PasswordRelogins int64 `json:"password_relogins"`
	TokensRefused    int64 `json:"tokens_refused"`
	// Attempts to get a session back that failed (dial or login) and were
	// tried again.
	ReconnectFailures int64 `json:"reconnect_failures"`
	ReplyTimeouts     int64 `json:"reply_timeouts"` // connections dropped for a reply that did not come in time
	DownAtEnd         int64 `json:"down_at_end"`    // sessions not back when the run ended
	// From a connection loss until the session was back (logged in again);
	// one that was not back at the end counts until the end.
	Outage Outage `json:"outage_ms"`
	// The longest time a receiving user went without a message while the
	// senders were sending.
	MaxReceiveGapMS float64 `json:"max_receive_gap_ms"`

	Resent            int64            `json:"resent"`            // sends repeated after a lost connection, same cid
	DuplicateReplies  int64            `json:"duplicate_replies"` // answered duplicate:true: the server had stored it
	SendErrorsRetried int64            `json:"send_errors_retried"`
	RetriedErrnos     map[string]int64 `json:"retried_errnos,omitempty"`
}

// Outage summarizes outage durations, in milliseconds.
type Outage struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// sessions keeps a run's simulated users logged in (reconnect mode). It
// owns a keeper goroutine per user, the watchdog goroutines and the
// senders' outbox flushers.
type sessions struct {
	cfg   Config
	log   *slog.Logger
	d     *dialer
	users []*simUser
	boxes []*outbox

	// Keepers and watchdogs; outbox flushers (stopped first, when the
	// drain ends; the keepers stay for the final acks).
	ctx, boxCtx       context.Context
	cancel, boxCancel context.CancelFunc
	wg, boxWG         sync.WaitGroup
	started, stopped  bool

	downNow atomic.Int64 // sessions down right now

	mu      sync.Mutex
	n       ReconnectReport
	outages *hdrhistogram.Histogram // ms
	retried map[int]int64
	warned  int // refused tokens logged at warn level
}

func newSessions(cfg Config, log *slog.Logger, d *dialer) *sessions {
	return &sessions{
		cfg: cfg, log: log, d: d,
		outages: hdrhistogram.New(1, int64(time.Hour/time.Millisecond), histSigFigs),
		retried: map[int]int64{},
	}
}

// start starts keeping users' sessions and flushing the outboxes.
func (s *sessions) start(users []*simUser) {
	s.users = users
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.boxCtx, s.boxCancel = context.WithCancel(s.ctx)
	s.started = true
	for _, u := range users {
		s.wg.Go(func() { s.keep(u) })
	}
	for lo := 0; lo < len(users); lo += usersPerWatcher {
		shard := users[lo:min(lo+usersPerWatcher, len(users))]
		s.wg.Go(func() { s.watch(shard) })
	}
	for _, b := range s.boxes {
		s.boxWG.Go(func() { b.run(s.boxCtx) })
	}
}

// stopSending stops the outbox flushers and waits for them: what they have
// not sent by now stays unanswered.
func (s *sessions) stopSending() {
	if !s.started {
		return
	}
	s.boxCancel()
	s.boxWG.Wait()
}

// stop stops everything and waits; sessions down now count their outage
// until now. Calling it again does nothing.
func (s *sessions) stop() {
	if !s.started || s.stopped {
		return
	}
	s.stopped = true
	s.stopSending()
	s.cancel()
	s.wg.Wait()
}

// keep replaces u's connection whenever it ends, until s stops.
func (s *sessions) keep(u *simUser) {
	for {
		c := u.conn()
		select {
		case <-c.done:
		case <-s.ctx.Done():
			return
		}
		u.setDown(true)
		s.downNow.Add(1)
		lost := c.failedTime()
		s.log.Debug("connection lost", "user", u.name, "addr", s.cfg.Addrs[u.addr], "err", c.Err())
		ok := s.restore(u)
		s.downNow.Add(-1)
		if !ok {
			s.outage(time.Since(lost), false)
			return
		}
		s.outage(time.Since(lost), true)
		u.setDown(false)
	}
}

// restore gets u's session back on a new connection, to the next address
// each attempt, with jittered backoff; false: s stopped first.
func (s *sessions) restore(u *simUser) bool {
	b := backoff.New(reconnectMinBackoff, reconnectMaxBackoff)
	for {
		if !b.Wait(s.ctx, 0) {
			return false
		}
		u.addr = (u.addr + 1) % len(s.cfg.Addrs)
		c, err := s.relogin(u, s.cfg.Addrs[u.addr])
		if err != nil {
			if s.ctx.Err() != nil {
				return false
			}
			s.mu.Lock()
			s.n.ReconnectFailures++
			s.mu.Unlock()
			s.log.Debug("reconnect failed", "user", u.name, "addr", s.cfg.Addrs[u.addr], "err", err)
			continue
		}
		u.c.Store(c)
		return true
	}
}

// relogin dials addr and logs u in again: with its resume token, or with
// the password if the server refuses the token; lastseq is the last seq
// u processed.
func (s *sessions) relogin(u *simUser, addr string) (*conn, error) {
	c, err := dial(s.ctx, s.d, addr, u.spec.h)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ReplyTimeout)
	defer cancel()
	var lastseq int64
	if u.inbox != nil {
		lastseq = u.inbox.maxSeq.Load() // the old connection's reader has ended: this is final
	}
	withToken := u.token != ""
	f, err := c.login(ctx, u.id, u.password, u.token, lastseq)
	var re *ReplyError
	if withToken && errors.As(err, &re) && re.Errno == int(wire.LoginInvalid) {
		// A refused token is a problem of the server's (it should stay
		// valid for a dropped connection): counted and reported, and the
		// password logs in from now on.
		s.mu.Lock()
		s.n.TokensRefused++
		warn := s.warned < loggedFailures
		s.warned++
		s.mu.Unlock()
		if warn {
			s.log.Warn("resume token refused; logging in with the password", "user", u.name, "addr", addr)
		}
		u.token, withToken = "", false
		f, err = c.login(ctx, u.id, u.password, "", lastseq)
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	u.token = f.Token
	s.mu.Lock()
	s.n.Reconnects++
	if withToken {
		s.n.Resumed++
	} else {
		s.n.PasswordRelogins++
	}
	s.mu.Unlock()
	return c, nil
}

// outage records one outage; back: the session came back (else it was
// still down at the end).
func (s *sessions) outage(d time.Duration, back bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outages.RecordValue(max(d.Milliseconds(), 1))
	if !back {
		s.n.DownAtEnd++
	}
}

// watch drops the connections of users whose oldest request has waited
// longer than the reply timeout, and pings those with nothing outstanding
// every pingIdle (a dead connection answers nothing: the next sweep drops
// it), until s stops.
func (s *sessions) watch(users []*simUser) {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	lastPing := make([]time.Time, len(users))
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for i, u := range users {
			c := u.live()
			if c == nil {
				continue
			}
			wait := c.oldestWait(now)
			switch {
			case wait > s.cfg.ReplyTimeout:
				s.mu.Lock()
				s.n.ReplyTimeouts++
				s.mu.Unlock()
				c.fail(fmt.Errorf("%w (%s)", errReplyTimeout, s.cfg.ReplyTimeout))
			case wait == 0 && now.Sub(lastPing[i]) >= pingIdle:
				lastPing[i] = now
				c.request(func(id int64) any { return pingFrame{MsgID: wire.Ping, ReqID: id} },
					func(*frame, error) {})
			}
		}
	}
}

// retriedSend counts a send answered with errno, to be retried.
func (s *sessions) retriedSend(errno int) {
	s.mu.Lock()
	s.n.SendErrorsRetried++
	s.retried[errno]++
	s.mu.Unlock()
}

func (s *sessions) count(f func(n *ReconnectReport)) {
	s.mu.Lock()
	f(&s.n)
	s.mu.Unlock()
}

// report returns the counts, the outages (a session still down counts
// until now: call it after stop) and the longest receive gap of chk.
func (s *sessions) report(chk *Checker) *ReconnectReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.n
	ms := func(v int64) float64 { return float64(v) }
	r.Outage = Outage{
		Count: s.outages.TotalCount(),
		P50:   ms(s.outages.ValueAtQuantile(50)),
		P99:   ms(s.outages.ValueAtQuantile(99)),
		Max:   ms(s.outages.Max()),
	}
	r.MaxReceiveGapMS = float64(chk.MaxReceiveGap().Microseconds()) / 1000
	if len(s.retried) > 0 {
		r.RetriedErrnos = map[string]int64{}
		for e, k := range s.retried {
			r.RetriedErrnos[strconv.Itoa(e)] = k
		}
	}
	return &r
}

// progress is the progress line's reconnect part.
func (s *sessions) progress() string {
	s.mu.Lock()
	n := s.n.Reconnects
	s.mu.Unlock()
	return fmt.Sprintf("  reconnects %d  down %d", n, s.downNow.Load())
}

// outbox is one sender's messages not acknowledged yet, in send order
// (reconnect mode); its flusher (run) sends them one at a time.
type outbox struct {
	s   *sessions
	u   *simUser
	out outgoing

	mu    sync.Mutex
	queue []queued
	wake  chan struct{} // capacity 1: something was queued
}

// outgoing is a sender as its outbox sees it.
type outgoing interface {
	// frame is message n, first sent at t, with reqid: the same message
	// (and cid) every time.
	frame(n int64, t time.Time, reqid int64) any
	acked(n int64)  // the server acknowledged n (maybe as a duplicate)
	gaveUp(n int64) // n was given up on
}

type queued struct {
	n    int64
	t    time.Time // first queued; the give-up time counts from here
	lost bool      // a connection was lost while it was sent: the next send is a resend
}

// outbox adds a sender's outbox to s; its flusher starts with s.
func (s *sessions) outbox(u *simUser, out outgoing) *outbox {
	b := &outbox{s: s, u: u, out: out, wake: make(chan struct{}, 1)}
	s.boxes = append(s.boxes, b)
	return b
}

// push queues message n, sent (numbered) at t.
func (b *outbox) push(n int64, t time.Time) {
	b.mu.Lock()
	b.queue = append(b.queue, queued{n: n, t: t})
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// head waits for the oldest message; false: ctx ended.
func (b *outbox) head(ctx context.Context) (queued, bool) {
	for {
		b.mu.Lock()
		if len(b.queue) > 0 {
			q := b.queue[0]
			b.mu.Unlock()
			return q, true
		}
		b.mu.Unlock()
		select {
		case <-b.wake:
		case <-ctx.Done():
			return queued{}, false
		}
	}
}

func (b *outbox) pop() {
	b.mu.Lock()
	b.queue = slices.Delete(b.queue, 0, 1)
	b.mu.Unlock()
}

func (b *outbox) markLost() {
	b.mu.Lock()
	b.queue[0].lost = true
	b.mu.Unlock()
}

// run sends the outbox's messages in order, each once its predecessor is
// acknowledged, until ctx ends.
func (b *outbox) run(ctx context.Context) {
	s := b.s
	pauses := backoff.New(retryMinBackoff, retryMaxBackoff)
	type answer struct {
		f   *frame
		err error
	}
	ch := make(chan answer, 1)
	for {
		q, ok := b.head(ctx)
		if !ok {
			return
		}
		deadline := q.t.Add(s.cfg.GiveUp)
		c := b.u.waitLive(ctx, deadline)
		if ctx.Err() != nil {
			return
		}
		if c == nil || !time.Now().Before(deadline) {
			b.pop()
			b.out.gaveUp(q.n)
			continue
		}
		if q.lost {
			s.count(func(n *ReconnectReport) { n.Resent++ })
		}
		c.requestChat(func(reqid int64) any { return b.out.frame(q.n, q.t, reqid) },
			func(f *frame, err error) { ch <- answer{f, err} })
		var a answer
		select {
		case a = <-ch:
		case <-ctx.Done():
			return
		}
		switch {
		case a.err != nil:
			// The connection broke (or did not answer in time): send it
			// again on the next one. No backoff: the session's keeper
			// has one.
			b.markLost()
		case a.f.Errno == int(wire.OK):
			if a.f.Duplicate {
				s.count(func(n *ReconnectReport) { n.DuplicateReplies++ })
			}
			b.pop()
			b.out.acked(q.n)
			pauses.Reset()
		default:
			s.retriedSend(a.f.Errno)
			if e := wire.Errno(a.f.Errno); e == wire.NotLoggedIn || e == wire.SessionExpired {
				// The connection lost its session: log in again.
				c.fail(fmt.Errorf("errno %d: %s", a.f.Errno, a.f.Errmsg))
			}
			if !pauses.Wait(ctx, max(time.Until(deadline), time.Nanosecond)) {
				return
			}
		}
	}
}
