package session

import (
	"encoding/json"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/subject"
)

// router holds one NATS subscription per user with a session on this
// gateway. All subscriptions feed one channel, drained by one dispatcher
// goroutine that never blocks on a client socket: it only hands messages to
// sessions, which queue them for their writers.
type router struct {
	nc  *nats.Conn
	log *slog.Logger
	ch  chan *nats.Msg

	mu   sync.Mutex
	subs map[int64]*route
}

type route struct {
	sub   *nats.Subscription
	first *Session   // the user's session here (almost always the only one)
	more  []*Session // others: a login under way while an older one ends
}

func (rt *route) add(s *Session) {
	if rt.first == nil {
		rt.first = s
		return
	}
	rt.more = append(rt.more, s)
}

func (rt *route) remove(s *Session) {
	if rt.first == s {
		rt.first = nil
		if len(rt.more) > 0 {
			rt.first = rt.more[0]
			rt.more = rt.more[1:]
		}
		return
	}
	for i, x := range rt.more {
		if x == s {
			rt.more = append(rt.more[:i], rt.more[i+1:]...)
			return
		}
	}
}

func (rt *route) empty() bool { return rt.first == nil }

func newRouter(nc *nats.Conn, log *slog.Logger, buffer int) *router {
	return &router{nc: nc, log: log, ch: make(chan *nats.Msg, buffer), subs: map[int64]*route{}}
}

// attach routes uid's messages to s, subscribing if this is the user's first
// session here. It does not wait for the server: the subscription goes out
// on the connection the login's request then takes (hub.c shares nc), and a
// NATS server handles one connection's messages in order, so the server
// has the subscription before the user service sees the login, and so
// before anything the claim lets others publish to uid. (A flush here was a
// round trip per login for nothing more: in a cluster, no flush to the
// gateway's own server orders other servers either.)
func (r *router) attach(uid int64, s *Session) error {
	r.mu.Lock()
	rt := r.subs[uid]
	if rt == nil {
		sub, err := r.nc.ChanSubscribe(subject.User(uid), r.ch)
		if err != nil {
			r.mu.Unlock()
			return err
		}
		rt = &route{sub: sub}
		r.subs[uid] = rt
	}
	rt.add(s)
	r.mu.Unlock()
	return nil
}

// detach stops routing uid's messages to s.
func (r *router) detach(uid int64, s *Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rt := r.subs[uid]
	if rt == nil {
		return
	}
	rt.remove(s)
	if rt.empty() {
		if err := rt.sub.Unsubscribe(); err != nil && err != nats.ErrConnectionClosed {
			r.log.Warn("unsubscribe", "user_id", uid, "err", err)
		}
		delete(r.subs, uid)
	}
}

func (r *router) sessionsOf(uid int64, buf []*Session) []*Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	rt := r.subs[uid]
	if rt == nil || rt.first == nil {
		return nil
	}
	return append(append(buf, rt.first), rt.more...)
}

// run dispatches until stop is closed.
func (r *router) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case m := <-r.ch:
			r.dispatch(m)
		}
	}
}

func (r *router) dispatch(m *nats.Msg) {
	uid, ok := subject.ParseUser(m.Subject)
	if !ok {
		return
	}
	var buf [2]*Session
	targets := r.sessionsOf(uid, buf[:0])
	if len(targets) == 0 {
		return
	}
	switch m.Header.Get(subject.KindHeader) {
	case subject.KindMsg:
		im, err := api.DecodePush(m.Data)
		if err != nil {
			r.log.Error("bad push", "user_id", uid, "err", err)
			return
		}
		for _, s := range targets {
			s.onPush(uid, im)
		}
	case subject.KindPresence:
		var n api.PresenceNotice
		if err := json.Unmarshal(m.Data, &n); err != nil {
			r.log.Error("bad presence notice", "user_id", uid, "err", err)
			return
		}
		for _, s := range targets {
			s.onPresence(uid, n)
		}
	case subject.KindKick:
		var k api.KickNotice
		if err := json.Unmarshal(m.Data, &k); err != nil {
			r.log.Error("bad kick", "user_id", uid, "err", err)
			return
		}
		for _, s := range targets {
			s.onKick(uid, k.SessionID)
		}
	}
}
