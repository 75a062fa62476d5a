package session

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/subject"
	"github.com/natter-chat/natter/shared/wire"
)

// Delivery invariant: s.delivered is the highest seq handed to the writer,
// and every seq up to it was handed over exactly once, in order. A live push
// is emitted only if it is exactly s.delivered+1; anything older is a
// duplicate and dropped; anything newer means a gap (pushes from different
// offline instances can overtake each other, and NATS drops messages during
// a reconnect), which is filled from the inbox by catchUp. While a replay or
// gap fill runs, live pushes wait in pending.
//
// Every login gets a new generation (s.gen). Work started for one login -
// a gap fill, a replay - checks it before touching the session, so it can
// never act on a later login of the same user on the same connection.

// live reports whether login generation gen is still the session's.
// Call with s.mu held.
func (s *Session) live(gen uint64) bool {
	return s.state != stateNone && s.gen == gen
}

// onPush is called by the dispatcher for a message routed to uid.
func (s *Session) onPush(uid int64, m api.InboxMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateNone || s.uid != uid {
		return
	}
	if s.syncing {
		s.hold(m)
		return
	}
	switch {
	case m.Seq <= s.delivered:
	case m.Seq == s.delivered+1:
		s.emitLocked(m, true)
	default:
		s.hold(m)
		s.startCatchUpLocked()
	}
}

// startCatchUpLocked fills the inbox gap after s.delivered on a goroutine of
// its own (never the dispatcher's). Call with s.mu held.
func (s *Session) startCatchUpLocked() {
	if s.syncing {
		return
	}
	s.syncing = true
	gen, uid := s.gen, s.uid
	s.tasks.Add(1)
	go func() {
		defer s.tasks.Done()
		if err := s.catchUp(context.Background(), gen, uid, nil, true); err != nil {
			s.mu.Lock()
			current := s.live(gen)
			s.mu.Unlock()
			if current {
				s.log().Warn("gap fill failed; closing so the client resumes", "user_id", uid, "err", err)
				s.setReason(reasonDelivery)
				s.sendClosing(wire.Reply, wire.Unavailable, "delivery interrupted; reconnect")
			}
		}
	}()
}

// resync makes a live session check its inbox for anything a lost push
// left behind (after a NATS reconnect or a dropped subscription message).
func (s *Session) resync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateLive {
		s.startCatchUpLocked()
	}
}

func (s *Session) hold(m api.InboxMessage) {
	if len(s.pending) >= maxPending {
		s.pending = nil
		s.overflow = true
	}
	if !s.overflow {
		s.pending = append(s.pending, m)
	}
}

// onKick closes this session if it is the one a newer login replaced. From
// that moment it is logged out: nothing more is sent or stored for it.
func (s *Session) onKick(uid int64, sid string) {
	s.mu.Lock()
	match := s.state != stateNone && s.uid == uid && s.sid == sid
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
		s.setReason(reasonKicked)
		s.sendClosingAs(legacy, wire.Kicked, wire.SessionReplaced, "logged in elsewhere; this session is closed")
	}
}

// onPresence tells a full-dialect client that a friend came online or went
// offline. Notices can overtake each other (several friend service
// instances): one older than the last seen for that friend is dropped, and
// so is one that repeats the state the client was last told (a flap).
func (s *Session) onPresence(uid int64, n api.PresenceNotice) {
	s.mu.Lock()
	if s.state != stateLive || s.uid != uid || s.dialect == dialectLegacy {
		s.mu.Unlock()
		return
	}
	last, seen := s.presence[n.ID]
	if seen && (n.At < last.at || n.Online == last.online) {
		if n.At > last.at {
			s.presence[n.ID] = friendState{n.At, n.Online}
		}
		s.mu.Unlock()
		return
	}
	if s.presence == nil {
		s.presence = map[int64]friendState{}
	}
	s.presence[n.ID] = friendState{n.At, n.Online}
	s.mu.Unlock()
	s.send(map[string]any{"msgid": wire.Presence, "id": n.ID, "state": state(n.Online)}, false)
}

// friendState is the last presence a client was told for a friend.
type friendState struct {
	at     int64
	online bool
}

// emitLocked hands m to the writer and advances s.delivered. Legacy clients
// cannot acknowledge, so their messages count as acknowledged once written.
// live says m came as a push (not from the inbox): its delivery latency is
// measured.
func (s *Session) emitLocked(m api.InboxMessage, live bool) {
	if m.Seq <= s.delivered {
		return
	}
	f := outFrame{msgs: 1}
	if live {
		f.stored = midTime(m.MID)
	}
	o, err := wire.Parse(m.Body)
	if err != nil {
		// The offline service only stores objects the gateway built; log and
		// skip rather than stall the inbox behind it.
		s.log().Error("undecodable inbox message; skipped", "user_id", s.uid, "seq", m.Seq, "err", err)
	} else {
		id, _ := o.Int("msgid")
		f.msgid = uint8(msgIndex(wire.MsgID(id)))
		if s.dialect == dialectLegacy {
			f.data = s.terminate(fitChat(o), true)
			f.ackUID, f.ackSeq = s.uid, m.Seq
		} else {
			o.Set("mid", m.MID)
			o.Set("seq", m.Seq)
			f.data = append(o.Encode(), byte(s.term.Load()))
		}
	}
	if f.data == nil || s.enqueue(f) {
		s.delivered = m.Seq
	}
}

// catchUp brings login generation gen of user uid up to date. It emits
// initial (a page already fetched; more says whether the inbox holds more
// after it), then fetches the inbox after s.delivered until it has all, then
// releases held live pushes that continue the sequence, fetching again while
// a gap remains. It ends the syncing state when nothing is held back. Frames
// go to the writer a chunk at a time, as the client reads them.
func (s *Session) catchUp(ctx context.Context, gen uint64, uid int64, initial []api.InboxMessage, more bool) error {
	page, fetch := initial, more
	for {
		// Set when this round fetched and got nothing after s.delivered,
		// with the inbox's last seq at that moment.
		fetchedNothing, last := false, int64(0)
		if page == nil && fetch {
			s.mu.Lock()
			if !s.live(gen) {
				s.mu.Unlock()
				return nil
			}
			after := s.delivered
			s.mu.Unlock()
			resp, err := s.fetch(ctx, uid, after)
			if err != nil {
				return err
			}
			page, last = resp.Messages, resp.Last
			fetchedNothing = len(page) == 0
			// A page can be cut short by size: more is decided by the
			// inbox's last seq, not by the page's length.
			more = len(page) > 0 && page[len(page)-1].Seq < resp.Last
		}
		if err := s.emitPaced(ctx, gen, page); err != nil {
			return err
		}
		page = nil
		if more {
			fetch = true
			continue
		}
		if err := s.waitRoom(ctx, chunkSize(s)); err != nil {
			return err
		}
		s.mu.Lock()
		if !s.live(gen) {
			s.mu.Unlock()
			return nil
		}
		slices.SortFunc(s.pending, func(a, b api.InboxMessage) int { return int(a.Seq - b.Seq) })
		keep := s.pending[:0]
		budget := chunkSize(s)
		for _, m := range s.pending {
			switch {
			case m.Seq <= s.delivered:
			case m.Seq == s.delivered+1 && budget > 0:
				s.emitLocked(m, true)
				budget--
			default:
				keep = append(keep, m)
			}
		}
		s.pending = keep
		switch {
		case budget == 0 && len(keep) > 0 && keep[0].Seq == s.delivered+1:
			// More held pushes continue the sequence: release them once
			// the client has read some.
			s.mu.Unlock()
			fetch = false
			continue
		case len(keep) == 0 && !s.overflow:
			s.syncing = false
			s.mu.Unlock()
			return nil
		case len(keep) > 0 && fetchedNothing && last >= keep[0].Seq:
			// Nothing to fetch after s.delivered although the inbox
			// reached keep[0] when we looked: the entries in between are
			// gone (pruned). Do not stall the user behind them.
			s.log().Error("inbox entries missing; skipping", "user_id", uid, "from", s.delivered+1, "to", keep[0].Seq-1)
			s.delivered = keep[0].Seq - 1
		}
		s.overflow = false
		s.mu.Unlock()
		fetch = true
	}
}

// emitPaced hands msgs to the writer a chunk at a time, waiting for the
// client to read.
func (s *Session) emitPaced(ctx context.Context, gen uint64, msgs []api.InboxMessage) error {
	for len(msgs) > 0 {
		chunk := msgs[:min(len(msgs), chunkSize(s))]
		msgs = msgs[len(chunk):]
		if err := s.waitRoom(ctx, len(chunk)); err != nil {
			return err
		}
		s.mu.Lock()
		if !s.live(gen) {
			s.mu.Unlock()
			return nil
		}
		for _, m := range chunk {
			s.emitLocked(m, false)
		}
		s.mu.Unlock()
	}
	return nil
}

// chunkSize is how many frames a replay hands the writer at a time.
func chunkSize(s *Session) int { return max(1, s.hub.opts.WriteQueue/4) }

// waitRoom waits until the write queue has room for n more frames (at most
// a quarter of it) and another quarter for live traffic: a replay is paced
// by the client's reading speed instead of overflowing its queue and cutting
// it off as slow.
func (s *Session) waitRoom(ctx context.Context, n int) error {
	for {
		select {
		case <-s.done:
			return errors.New("connection closed")
		default:
		}
		if q := s.hub.opts.WriteQueue; q-s.queued() >= n+q/4 {
			return nil
		}
		select {
		case <-s.done:
			return errors.New("connection closed")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// fetch reads a page of uid's inbox after seq after. At most fetchSlots
// fetches per gateway run at once, so a resync of every session after a
// reconnect does not flood the offline service.
func (s *Session) fetch(ctx context.Context, uid, after int64) (*api.FetchResponse, error) {
	select {
	case s.hub.fetchSlots <- struct{}{}:
		defer func() { <-s.hub.fetchSlots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, errors.New("connection closed")
	}
	var resp api.FetchResponse
	rctx, cancel := context.WithTimeout(ctx, s.hub.opts.RequestTimeout)
	defer cancel()
	err := s.hub.m.Call(rctx, s.hub.nc, subject.OfflineFetch,
		api.FetchRequest{UserID: uid, After: after, Limit: s.hub.opts.ReplayPage}, &resp)
	if err != nil {
		return nil, err
	}
	return &resp, nil
}
