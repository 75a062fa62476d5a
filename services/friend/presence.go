package friend

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/services/friend/internal/friendship"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/subject"
)

// maxRemembered bounds the map of what this instance last fanned out per
// user; past it the map starts afresh (forgetting only costs a notice that
// a newest-wins receiver ignores).
const maxRemembered = 1 << 20

// PresenceStats counts what an instance's presence fan-out has done.
type PresenceStats struct {
	// Events is how many presence events were received.
	Events int64 `json:"events"`
	// Malformed is how many messages or events were dropped as malformed.
	Malformed int64 `json:"malformed"`
	// Pending is how many users wait in the current coalescing window.
	Pending int `json:"pending"`
	// Handled is how many received events are done with: fanned out,
	// superseded by a later event in their window, or stale. Events that
	// are neither Handled nor pending are being fanned out right now.
	Handled int64 `json:"handled"`
	// Stale is how many users' latest events were dropped because this
	// instance had already fanned out a newer one.
	Stale int64 `json:"stale"`
	// Fanouts is how many user changes were fanned out.
	Fanouts int64 `json:"fanouts"`
	// Notices is how many notices were published to friends.
	Notices int64 `json:"notices"`
	// Lookups is how many FriendsOf calls the fan-out made (one per window
	// and up to friendship.ChunkIDs users).
	Lookups int64 `json:"lookups"`
	// Queries is how many SQL statements FriendsOf has run.
	Queries int64 `json:"queries"`
	// Failed is how many lookups failed; their events are tried again in
	// the next window.
	Failed int64 `json:"failed"`
}

// pendingEvent is a user's latest event in the current window.
type pendingEvent struct {
	online bool
	at     int64
	// events is how many received events this one stands for.
	events int64
}

// merge folds o, received after p (or p requeued after a failed lookup
// and o received meanwhile), into p: the later event wins, and of two
// events with the same time the one received last.
func (p pendingEvent) merge(o pendingEvent) pendingEvent {
	n := p.events + o.events
	if o.at >= p.at {
		p = o
	}
	p.events = n
	return p
}

// sent is the newest event this instance fanned out for a user.
type sent struct {
	online bool
	at     int64
}

// presence coalesces presence events and fans them out to friends.
//
// receive runs on the subscription's delivery goroutine and only records
// each user's latest event (by At) in pending; run, on a goroutine of its
// own, takes pending CoalesceWindow after its first event arrived, looks
// up the friends and publishes. Every notice carries the event's time and
// receivers keep the newest, so instances sharing the queue group may
// publish in any order.
//
// published remembers the newest event this instance fanned out per user,
// only to drop an event older than it (friends already have something
// newer). A user whose window ends in the state this instance last
// published is still fanned out: the queue group spreads a user's events
// over the instances, so another one may have published a different state
// in between (online through A, offline through B, online through A again),
// and skipping would leave friends with the wrong state until the next
// change. A flap inside one window costs one notice per friend, not three.
type presence struct {
	nc      *nats.Conn
	store   *friendship.Store
	log     *slog.Logger
	window  time.Duration
	timeout time.Duration

	mu      sync.Mutex
	pending map[int64]pendingEvent
	// wake has room for one signal: pending became non-empty.
	wake chan struct{}

	// published is only used by run's goroutine.
	published map[int64]sent
	failing   int // lookups failed in a row, for the log

	events, malformed, handled, stale   atomic.Int64
	fanouts, notices, lookups, failures atomic.Int64
}

func newPresence(nc *nats.Conn, store *friendship.Store, cfg Config, log *slog.Logger) *presence {
	return &presence{
		nc:        nc,
		store:     store,
		log:       log,
		window:    cfg.CoalesceWindow,
		timeout:   cfg.RequestTimeout,
		pending:   map[int64]pendingEvent{},
		wake:      make(chan struct{}, 1),
		published: map[int64]sent{},
	}
}

// receive is the presence subscription's handler: it decodes the events
// and records each user's latest, nothing more.
func (p *presence) receive(m *nats.Msg) {
	var evs api.PresenceEvents
	if err := json.Unmarshal(m.Data, &evs); err != nil {
		p.malformed.Add(1)
		p.log.Warn("presence: malformed events", "err", err)
		return
	}
	var bad int64
	p.mu.Lock()
	wasEmpty := len(p.pending) == 0
	for _, e := range evs.Events {
		if e.UserID <= 0 {
			bad++
			continue
		}
		ev := pendingEvent{online: e.Online, at: e.At, events: 1}
		if cur, ok := p.pending[e.UserID]; ok {
			ev = cur.merge(ev)
		}
		p.pending[e.UserID] = ev
	}
	nowPending := len(p.pending) > 0
	// Counted under the lock, so Handled never runs ahead of Events.
	p.events.Add(int64(len(evs.Events)) - bad)
	p.mu.Unlock()
	if bad > 0 {
		p.malformed.Add(bad)
		p.log.Warn("presence: events without a valid user id dropped", "events", bad)
	}
	if wasEmpty && nowPending {
		p.signal()
	}
}

func (p *presence) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run fans out a window's events CoalesceWindow after the first of them
// arrived, until ctx ends; then it fans out what is pending once more.
func (p *presence) run(ctx context.Context) {
	defer p.final()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		}
		t := time.NewTimer(p.window)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		p.flush(ctx)
	}
}

// final fans out what is pending at stop, with a deadline of its own.
func (p *presence) final() {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	p.flush(ctx)
	p.mu.Lock()
	lost := len(p.pending)
	p.mu.Unlock()
	if lost > 0 {
		p.log.Warn("presence: events not fanned out at stop", "users", lost)
	}
}

// flush takes the window's events and fans them out. Users whose friends
// could not be looked up go back into pending for the next window.
func (p *presence) flush(ctx context.Context) {
	p.mu.Lock()
	batch := p.pending
	if len(batch) == 0 {
		p.mu.Unlock()
		return
	}
	p.pending = make(map[int64]pendingEvent, len(batch))
	p.mu.Unlock()

	users := make([]int64, 0, len(batch))
	for uid, ev := range batch {
		last, ok := p.published[uid]
		if ok && (ev.at < last.at || ev.at == last.at && ev.online == last.online) {
			// Friends already have a newer notice from this instance.
			p.stale.Add(1)
			p.handled.Add(ev.events)
			continue
		}
		users = append(users, uid)
	}
	slices.Sort(users)
	if len(p.published)+len(users) > maxRemembered {
		clear(p.published)
	}
	for len(users) > 0 {
		chunk := users[:min(len(users), friendship.ChunkIDs)]
		lctx, cancel := context.WithTimeout(ctx, p.timeout)
		started := time.Now()
		pairs, err := p.store.FriendsOf(lctx, chunk)
		cancel()
		p.lookups.Add(1)
		if err != nil {
			p.lookupFailed(ctx, err, batch, users)
			return
		}
		if p.failing > 0 {
			p.log.Info("presence: friend lookups work again", "failed", p.failing)
			p.failing = 0
		}
		sentNotices := p.publish(batch, pairs)
		for _, uid := range chunk {
			ev := batch[uid]
			p.published[uid] = sent{online: ev.online, at: ev.at}
			p.handled.Add(ev.events)
		}
		p.fanouts.Add(int64(len(chunk)))
		p.log.Debug("presence fanned out", "users", len(chunk), "notices", sentNotices,
			"took", time.Since(started))
		users = users[len(chunk):]
	}
}

// publish sends each pair's friend a notice of the user's latest event
// (pairs are ordered by user, so each notice is encoded once) and returns
// how many it published. Publishing only queues into the connection's
// buffer; offline friends have no subscriber and cost the server nothing
// more.
func (p *presence) publish(batch map[int64]pendingEvent, pairs []friendship.Pair) int {
	hdr := nats.Header{subject.KindHeader: []string{subject.KindPresence}}
	var (
		cur  int64
		body []byte
		n    int
	)
	for _, pr := range pairs {
		if pr.UserID != cur || body == nil {
			cur = pr.UserID
			ev := batch[cur]
			var err error
			body, err = api.Marshal(api.PresenceNotice{ID: cur, Online: ev.online, At: ev.at})
			if err != nil {
				p.log.Error("presence: encode notice", "user_id", cur, "err", err)
				return n
			}
		}
		msg := &nats.Msg{Subject: subject.User(pr.FriendID), Header: hdr, Data: body}
		if err := p.nc.PublishMsg(msg); err != nil {
			// The connection is closed: nothing more can be published.
			p.log.Warn("presence: publish notice", "user_id", pr.UserID, "friend_id", pr.FriendID, "err", err)
			break
		}
		n++
	}
	p.notices.Add(int64(n))
	return n
}

// lookupFailed puts users (the ones not fanned out yet) back into pending,
// where newer events that arrived meanwhile win, and logs the first
// failure of a streak (a lookup cut short by Stop is not one).
func (p *presence) lookupFailed(ctx context.Context, err error, batch map[int64]pendingEvent, users []int64) {
	p.failures.Add(1)
	if ctx.Err() == nil {
		if p.failing == 0 {
			p.log.Error("presence: look up friends; retrying in the next window", "users", len(users), "err", err)
		}
		p.failing++
	}
	p.mu.Lock()
	for _, uid := range users {
		ev := batch[uid]
		if cur, ok := p.pending[uid]; ok {
			ev = ev.merge(cur)
		}
		p.pending[uid] = ev
	}
	p.mu.Unlock()
	p.signal()
}

func (p *presence) pendingUsers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

func (p *presence) statsSnapshot() PresenceStats {
	pending := p.pendingUsers()
	return PresenceStats{
		Events:    p.events.Load(),
		Malformed: p.malformed.Load(),
		Pending:   pending,
		Handled:   p.handled.Load(),
		Stale:     p.stale.Load(),
		Fanouts:   p.fanouts.Load(),
		Notices:   p.notices.Load(),
		Lookups:   p.lookups.Load(),
		Queries:   p.store.FriendsOfQueries(),
		Failed:    p.failures.Load(),
	}
}
