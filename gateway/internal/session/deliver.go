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
// offline instances can overtake each other), which is filled from the inbox
// by catchUp. While a replay or gap fill runs, live pushes wait in pending.

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
		s.emitLocked(m)
	default:
		s.hold(m)
		s.syncing = true
		s.tasks.Add(1)
		go func() {
			defer s.tasks.Done()
			if err := s.catchUp(context.Background(), uid, nil, true); err != nil {
				s.log.Warn("gap fill failed; closing so the client resumes", "user_id", uid, "err", err)
				s.sendError(wire.Reply, nil, wire.Unavailable, "delivery interrupted; reconnect", true)
			}
		}()
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

// onKick closes this session if it is the one a newer login replaced.
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
		s.log.Info("session replaced by a newer login", "user_id", uid)
		s.sendError(wire.Kicked, nil, wire.SessionReplaced, "logged in elsewhere; this session is closed", true)
	}
}

// onPresence tells a full-dialect client that a friend came online or went
// offline. Notices can overtake each other (several friend service
// instances); an older one than the last seen for that friend is dropped.
func (s *Session) onPresence(uid int64, n api.PresenceNotice) {
	s.mu.Lock()
	if s.state != stateLive || s.uid != uid || s.dialect == dialectLegacy || n.At < s.presenceAt[n.ID] {
		s.mu.Unlock()
		return
	}
	if s.presenceAt == nil {
		s.presenceAt = map[int64]int64{}
	}
	s.presenceAt[n.ID] = n.At
	s.mu.Unlock()
	s.send(map[string]any{"msgid": wire.Presence, "id": n.ID, "state": state(n.Online)}, false)
}

// emitLocked hands m to the writer and advances s.delivered. Legacy clients
// cannot acknowledge, so their messages count as acknowledged once written.
func (s *Session) emitLocked(m api.InboxMessage) {
	if m.Seq <= s.delivered {
		return
	}
	f := outFrame{}
	o, err := wire.Parse(m.Body)
	if err != nil {
		// The offline service only stores objects the gateway built; log and
		// skip rather than stall the inbox behind it.
		s.log.Error("undecodable inbox message; skipped", "user_id", s.uid, "seq", m.Seq, "err", err)
	} else if s.dialect == dialectLegacy {
		f.data = append(o.Encode(), byte(s.term.Load()))
		f.ackUID, f.ackSeq = s.uid, m.Seq
	} else {
		o.Set("mid", m.MID)
		o.Set("seq", m.Seq)
		f.data = append(o.Encode(), byte(s.term.Load()))
	}
	if f.data == nil || s.enqueue(f) {
		s.delivered = m.Seq
	}
}

// catchUp emits initial (a page already fetched; full says whether more
// may follow), then fetches the inbox after s.delivered, emitting in order,
// then releases held live pushes that continue the sequence. It loops until
// nothing is held back, then ends the syncing state. Frames go to the writer
// a chunk at a time, as the client reads them.
func (s *Session) catchUp(ctx context.Context, uid int64, initial []api.InboxMessage, full bool) error {
	stalls := 0
	fetch := full
	for {
		page := initial
		initial = nil
		if page == nil && fetch {
			s.mu.Lock()
			if s.state == stateNone || s.uid != uid {
				s.mu.Unlock()
				return nil
			}
			after := s.delivered
			s.mu.Unlock()
			resp, err := s.fetch(ctx, uid, after)
			if err != nil {
				return err
			}
			page = resp.Messages
			full = len(page) == s.hub.opts.ReplayPage
		}
		if page != nil {
			for rest := page; len(rest) > 0; {
				chunk := rest[:min(len(rest), chunkSize(s))]
				rest = rest[len(chunk):]
				if err := s.waitRoom(ctx, len(chunk)); err != nil {
					return err
				}
				s.mu.Lock()
				if s.state == stateNone || s.uid != uid {
					s.mu.Unlock()
					return nil
				}
				for _, m := range chunk {
					s.emitLocked(m)
				}
				s.mu.Unlock()
			}
			if full {
				fetch = true
				continue
			}
		}
		if err := s.waitRoom(ctx, chunkSize(s)); err != nil {
			return err
		}
		s.mu.Lock()
		if s.state == stateNone || s.uid != uid {
			s.mu.Unlock()
			return nil
		}
		before := s.delivered
		slices.SortFunc(s.pending, func(a, b api.InboxMessage) int { return int(a.Seq - b.Seq) })
		keep := s.pending[:0]
		budget := chunkSize(s)
		for _, m := range s.pending {
			switch {
			case m.Seq <= s.delivered:
			case m.Seq == s.delivered+1 && budget > 0:
				s.emitLocked(m)
				budget--
			default:
				keep = append(keep, m)
			}
		}
		s.pending = keep
		if budget == 0 && len(keep) > 0 && keep[0].Seq == s.delivered+1 {
			// More held pushes continue the sequence: release them after
			// the client has read some.
			s.mu.Unlock()
			fetch = false
			continue
		}
		if len(keep) == 0 && !s.overflow {
			s.syncing = false
			s.mu.Unlock()
			return nil
		}
		s.overflow = false
		if s.delivered == before && fetch {
			// The inbox had nothing to fill the gap. A seq below a held push
			// is always committed before it (the inbox row lock orders
			// them), so this only happens if entries were lost; do not stall
			// the user behind it forever.
			stalls++
			if stalls >= 3 && len(keep) > 0 {
				s.log.Error("inbox gap never filled; skipping", "user_id", uid, "from", s.delivered+1, "to", keep[0].Seq-1)
				s.delivered = keep[0].Seq - 1
			}
		} else {
			stalls = 0
		}
		s.mu.Unlock()
		fetch = true
	}
}

// chunkSize is how many frames a replay hands the writer at a time.
func chunkSize(s *Session) int { return max(1, cap(s.out)/4) }

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
		if cap(s.out)-len(s.out) >= n+cap(s.out)/4 {
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

func (s *Session) fetch(ctx context.Context, uid, after int64) (*api.FetchResponse, error) {
	var resp api.FetchResponse
	rctx, cancel := context.WithTimeout(ctx, s.hub.opts.RequestTimeout)
	defer cancel()
	err := api.Call(rctx, s.hub.nc, subject.OfflineFetch,
		api.FetchRequest{UserID: uid, After: after, Limit: s.hub.opts.ReplayPage}, &resp)
	if err != nil {
		return nil, err
	}
	return &resp, nil
}
