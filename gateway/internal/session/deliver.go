package session

import (
	"context"
	"errors"
	"time"

	"github.com/natter-chat/natter/gateway/internal/cursor"
	"github.com/natter-chat/natter/gateway/internal/netconn"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/subject"
	"github.com/natter-chat/natter/shared/wire"
)

// Delivery: the router hands each message published on a user's subject to
// the user's sessions here; the login's cursor (gateway/internal/cursor)
// says what to write, and a sync (replay at login, gap fill) runs on a
// goroutine of its own while it lasts, paced by what the client reads.
//
// Every login gets a new generation (s.gen). Work started for one login -
// a gap fill, a replay - checks it before touching the session, so it can
// never act on a later login of the same user on the same connection.

// syncBudget is how many messages a sync hands the connection at a time.
const syncBudget = 64

// onPush is called by the dispatcher for a message routed to uid.
func (s *Session) onPush(uid int64, m api.InboxMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateNone || s.uid != uid {
		return
	}
	if s.cur == nil { // the login has not read the inbox yet
		if len(s.early) < maxHeldPushes {
			s.early = append(s.early, m)
		} else {
			s.lost = true // the login's sync reads the inbox again
		}
		return
	}
	emit, sync := s.cur.Push(m)
	if emit {
		s.emitLocked(m, true)
	}
	if sync {
		s.startSyncLocked(nil)
	}
}

// emitLocked hands message m to the connection (the cursor has counted it
// as delivered). A legacy client cannot acknowledge: on TCP its records
// carry marks confirmed when the connection ends (netconn), otherwise a
// message counts as acknowledged once handed over. live says m came as a
// push (not from the inbox): its delivery latency is measured. Call with
// s.mu held.
func (s *Session) emitLocked(m api.InboxMessage, live bool) {
	legacy := s.isLegacy(s.dial)
	f, id, ok := encodePush(m, legacy)
	if !ok {
		// The offline service only stores objects the gateway built; log and
		// skip rather than stall the inbox behind it.
		s.log().Error("undecodable inbox message; skipped", "user_id", s.uid, "seq", m.Seq)
		return
	}
	f = s.terminate(f)
	var sent bool
	switch {
	case legacy && s.conn.Records():
		sent = s.conn.SendMarked(f, s.uid, m.Seq)
	case legacy:
		if sent = s.conn.Send(f); sent {
			s.hub.acks.ack(s.uid, m.Seq)
		}
	default:
		sent = s.conn.Send(f)
	}
	if !sent {
		return
	}
	s.hub.m.framesOut[msgIndex(id)].Inc()
	s.hub.m.pushed.Inc()
	if live {
		if t := midTime(m.MID); t > 0 {
			s.hub.m.latency.Observe(max(0, float64(time.Now().UnixMilli()-t)/1e3))
		}
	}
}

// startSyncLocked runs the login's sync (gap fill, resync) on a goroutine
// of its own, never the dispatcher's. Call with s.mu held.
func (s *Session) startSyncLocked(first *cursor.Page) {
	gen, uid := s.gen, s.uid
	s.tasks.Add(1)
	go func() {
		defer s.tasks.Done()
		s.runSync(gen, uid, first)
	}()
}

// runSync drives a sync of login generation gen to its end: pages of the
// inbox and held pushes, handed over a budget at a time as the client reads.
// A fetch that fails closes the connection so the client resumes.
func (s *Session) runSync(gen uint32, uid int64, in *cursor.Page) {
	for {
		s.mu.Lock()
		if !s.live(gen) || s.cur == nil {
			s.mu.Unlock()
			return
		}
		emit, next := s.cur.Step(in, syncBudget)
		in = nil
		for _, m := range emit {
			s.emitLocked(m, false)
		}
		if from, to, ok := s.cur.Skipped(); ok {
			s.log().Error("inbox entries missing; skipping", "user_id", uid, "from", from, "to", to)
		}
		after := s.cur.Delivered()
		s.mu.Unlock()
		switch next {
		case cursor.Done:
			return
		case cursor.Fetch:
			resp, err := s.fetch(context.Background(), uid, after)
			if err != nil {
				s.mu.Lock()
				current := s.live(gen)
				s.mu.Unlock()
				if current && !s.conn.Closing() {
					s.log().Warn("delivery failed; closing so the client resumes", "user_id", uid, "err", err)
					s.conn.SetReason(netconn.ReasonDelivery)
					s.sendClosing(wire.Reply, wire.Unavailable, "delivery interrupted; reconnect")
				}
				return
			}
			in = &cursor.Page{Messages: resp.Messages, Last: resp.Last}
		case cursor.More:
			if err := s.waitRoom(); err != nil {
				return
			}
		}
	}
}

// waitRoom waits until the client has read most of what is queued for it:
// a replay is paced by the client's reading, never by the size of its
// queue (which would cut it off as slow).
func (s *Session) waitRoom() error {
	for s.conn.Queued() > s.hub.opts.WriteLimit/4 {
		if s.conn.Closing() {
			return errors.New("connection closed")
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// resync makes a live session check its inbox for anything a lost push
// left behind (after a NATS reconnect or a dropped subscription message).
func (s *Session) resync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateLive && s.cur != nil && s.cur.Resync() {
		s.startSyncLocked(nil)
	}
}

// fetch reads a page of uid's inbox after seq after (-1: after the
// acknowledged seq). At most fetchSlots fetches per gateway run at once, so
// a resync of every session after a reconnect does not flood the offline
// service.
func (s *Session) fetch(ctx context.Context, uid, after int64) (*api.FetchResponse, error) {
	select {
	case s.hub.fetchSlots <- struct{}{}:
		defer func() { <-s.hub.fetchSlots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var resp api.FetchResponse
	rctx, cancel := context.WithTimeout(ctx, s.hub.opts.RequestTimeout)
	defer cancel()
	err := s.hub.c.call(rctx, subject.OfflineFetch,
		api.FetchRequest{UserID: uid, After: after, Limit: s.hub.opts.ReplayPage}, &resp, true)
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// onKick closes this session if it is the one a newer login replaced. From
// that moment it is logged out: nothing more is sent or stored for it.
func (s *Session) onKick(uid int64, sid string) {
	s.mu.Lock()
	match := s.state != stateNone && s.uid == uid && s.sid.String() == sid
	if match && s.state == stateLogging {
		// The login is still in flight: it answers the client itself.
		s.kicked = true
		match = false
	}
	s.mu.Unlock()
	if match {
		s.log().Info("session replaced by a newer login", "user_id", uid)
		legacy := s.legacy()
		s.endLogin()
		s.conn.SetReason(netconn.ReasonKicked)
		s.sendClosingAs(legacy, wire.Kicked, wire.SessionReplaced, "logged in elsewhere; this session is closed")
	}
}

// onPresence tells a full-dialect client that a friend came online or went
// offline. Notices can overtake each other (several friend service
// instances): one older than the last seen for that friend is dropped, and
// so is one that repeats the state the client was last told (a flap).
func (s *Session) onPresence(uid int64, n api.PresenceNotice) {
	s.mu.Lock()
	if s.state != stateLive || s.uid != uid || s.dial == dialectLegacy {
		s.mu.Unlock()
		return
	}
	last, seen := s.pres[n.ID]
	if seen && (n.At < last.at || n.Online == last.online) {
		if n.At > last.at {
			s.pres[n.ID] = friendState{n.At, n.Online}
		}
		s.mu.Unlock()
		return
	}
	if s.pres == nil {
		s.pres = map[int64]friendState{}
	}
	s.pres[n.ID] = friendState{n.At, n.Online}
	s.mu.Unlock()
	s.send(map[string]any{"msgid": wire.Presence, "id": n.ID, "state": state(n.Online)}, false)
}

// friendState is the last presence a client was told for a friend.
type friendState struct {
	at     int64
	online bool
}
