package session

import (
	"context"
	"errors"

	"github.com/google/uuid"

	"github.com/natter-chat/natter/gateway/internal/cursor"
	"github.com/natter-chat/natter/gateway/internal/netconn"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/subject"
	"github.com/natter-chat/natter/shared/wire"
)

// A login, in the order its steps run: the frame is checked (at once); the
// session subscribes to the user's subject (so that nothing stored after
// the claim, and no kick, can be missed); the user service claims the
// session; the inbox state and the friend and group lists are read
// together; the LOGIN_ACK is sent; then the replay runs on the same
// goroutine, paced by the client's reading. Frames the client sends while
// a login is under way wait for its LOGIN_ACK (they need its identity);
// acks, pings and a logout sent during the replay are answered at once.

// loginReq is a checked LOGIN frame.
type loginReq struct {
	uid      int64
	password string
	token    string
	lastSeq  int64
	hasLast  bool
	dial     dialect
	reqid    []byte
	method   int // for the login counters: 0 password, 1 token
}

func (s *Session) handleLogin(o wire.Object, reqid []byte) {
	r, err := s.parseLogin(o)
	r.reqid = append([]byte(nil), reqid...)
	if err != nil {
		s.hub.m.logins[r.method][loginInvalid].Inc()
		s.sendError(wire.Login, reqid, wire.BadField, err.Error(), false)
		return
	}
	if r.uid <= 0 {
		s.hub.m.logins[r.method][loginInvalid].Inc()
		s.sendError(wire.Login, reqid, wire.LoginInvalid, wire.MsgLoginInvalid, false)
		return
	}
	s.mu.Lock()
	if s.state != stateNone {
		s.mu.Unlock()
		s.hub.m.logins[r.method][loginInvalid].Inc()
		s.sendError(wire.Login, reqid, wire.AlreadyLoggedIn, "already logged in on this connection", false)
		return
	}
	sid := uuid.New()
	s.gen++
	gen := s.gen
	s.state, s.uid, s.sid, s.dial = stateLogging, r.uid, sid, r.dial
	s.cur, s.early, s.lost = nil, nil, false
	s.gate = true // later frames wait for the LOGIN_ACK
	s.mu.Unlock()
	if r.dial == dialectFull {
		s.conn.SetRecords(false)
	}
	s.start()
	s.tasks.Add(1)
	go func() {
		defer s.tasks.Done()
		first, ok := s.login(r, gen, sid.String())
		s.done()
		s.release()
		if ok {
			s.runSync(gen, r.uid, first)
		}
	}()
}

// parseLogin checks a LOGIN frame's fields.
func (s *Session) parseLogin(o wire.Object) (r loginReq, err error) {
	var dname string
	var hasToken bool
	r.uid, err = o.Int("id")
	if err == nil {
		// A password, or the resume token of an earlier login.
		r.token, hasToken, err = o.OptString("token")
	}
	if hasToken {
		r.method = 1
	}
	if err == nil && !hasToken {
		r.password, err = o.String("password")
	}
	if err == nil {
		dname, _, err = o.OptString("dialect")
	}
	if err == nil {
		r.lastSeq, r.hasLast, err = o.OptInt("lastseq")
	}
	if err != nil {
		return r, err
	}
	switch {
	case dname == "full":
		r.dial = dialectFull
	case dname == "legacy":
		r.dial = dialectLegacy
	case dname != "":
		return r, &wire.FieldError{Field: "dialect", Reason: `must be "full" or "legacy"`}
	case s.conn.Term() == wire.TermNUL:
		r.dial = dialectLegacy
	default:
		r.dial = dialectFull
	}
	return r, nil
}

// login runs a login's steps up to its LOGIN_ACK. It returns the first
// page of the inbox to replay, and false when the login failed (answered).
func (s *Session) login(r loginReq, gen uint32, sid string) (*cursor.Page, bool) {
	fail := func(result loginResult, errno wire.Errno, msg string) (*cursor.Page, bool) {
		s.endLogin()
		s.hub.m.logins[r.method][result].Inc()
		s.sendError(wire.Login, r.reqid, errno, msg, false)
		return nil, false
	}
	if err := s.hub.router.attach(r.uid, s); err != nil {
		errno, msg := s.serviceError("login subscribe", err)
		return fail(loginError, errno, msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*s.hub.opts.RequestTimeout)
	defer cancel()
	var resp api.LoginResponse
	remote := ""
	if a := s.conn.RemoteAddr(); a != nil {
		remote = a.String()
	}
	// The user service reads the inbox's first page and the lists after
	// the claim and answers them with the login (api.LoginBundle): one
	// round trip. What it could not read, the gateway reads below.
	err := s.hub.c.call(ctx, subject.UserLogin, api.LoginRequest{
		UserID: r.uid, Password: r.password, ResumeToken: r.token, GatewayID: s.hub.opts.GatewayID, SessionID: sid,
		Remote: remote, Bundle: &api.LoginBundle{InboxLimit: s.hub.opts.ReplayPage, Lists: true},
	}, &resp, false)
	var ae *api.Error
	switch {
	case errors.Is(err, api.ErrLoginThrottled) && errors.As(err, &ae):
		// Nothing was claimed: the user service refused before checking.
		return fail(loginThrottled, wire.LoginThrottled, ae.Message)
	case errors.Is(err, api.ErrBadLogin), errors.Is(err, api.ErrBadRequest):
		return fail(loginInvalid, wire.LoginInvalid, wire.MsgLoginInvalid)
	case errors.Is(err, api.ErrSessionLive):
		return fail(loginInUse, wire.LoginInUse, wire.MsgLoginInUse)
	case err != nil:
		// The claim may have committed before the answer was lost: release
		// it, or under the reject policy the user would be locked out until
		// this gateway stops.
		s.hub.logouts.add(r.uid, sid, false)
		errno, msg := s.serviceError("login", err)
		return fail(loginError, errno, msg)
	}
	var (
		friends, groups, missing = resp.Friends, resp.Groups, resp.Missing
		lists                    = make(chan struct{})
		first                    = resp.Inbox
	)
	if resp.Lists {
		close(lists)
	} else {
		go func() {
			defer close(lists)
			friends, groups, missing = s.loginLists(ctx, r.uid)
		}()
	}
	if first == nil {
		first, err = s.fetch(ctx, r.uid, -1)
	}
	<-lists
	if err != nil {
		s.hub.logouts.add(r.uid, sid, false)
		errno, msg := s.serviceError("login fetch", err)
		return fail(loginError, errno, msg)
	}
	start := first.Acked
	if r.hasLast && r.lastSeq > start {
		// The client says it already has everything up to lastseq (it
		// acknowledged it on a connection that died before the ack landed).
		start = min(r.lastSeq, first.Last)
		s.hub.acks.ack(r.uid, start)
	}
	if w := s.conn.Written(r.uid); w > start {
		// Legacy records of an earlier login on this connection are read
		// before anything written now: go on after them.
		start = min(w, first.Last)
	}
	msgs := first.Messages
	for len(msgs) > 0 && msgs[0].Seq <= start {
		msgs = msgs[1:]
	}

	s.mu.Lock()
	if s.kicked || !s.live(gen) {
		s.mu.Unlock()
		s.endLogin()
		s.hub.m.logins[r.method][loginError].Inc()
		s.conn.SetReason(netconn.ReasonKicked)
		s.sendClosingAs(r.dial == dialectLegacy, wire.Login, wire.SessionReplaced, "logged in elsewhere; this session is closed")
		return nil, false
	}
	s.state, s.name = stateLive, resp.Name
	s.cur = cursor.New(start, maxHeldPushes)
	s.hub.m.logins[r.method][loginOK].Inc()
	s.hub.m.sessions.Inc()
	if r.dial == dialectLegacy {
		msgs = s.sendLegacyLoginAckLocked(r.uid, resp.Name, friends, groups, msgs)
	} else {
		s.sendLoginAck(r, resp, friends, groups, missing, start, first.Last)
	}
	for _, m := range s.early {
		s.cur.Push(m) // held: the cursor is syncing
	}
	if s.lost {
		s.cur.Missed()
	}
	s.early, s.lost = nil, false
	s.mu.Unlock()
	s.log().Info("login", "user_id", r.uid, "dialect", map[bool]string{true: "legacy", false: "full"}[r.dial == dialectLegacy])
	// The replay takes as long as the client needs to read it: each fetch
	// has its own deadline, the whole has none but the connection's life.
	return &cursor.Page{Messages: msgs, Last: first.Last}, true
}

// sendLoginAck sends the full dialect's LOGIN_ACK.
func (s *Session) sendLoginAck(r loginReq, resp api.LoginResponse, friends []api.Profile, groups []api.Group,
	missing []string, start, last int64) {
	ack := map[string]any{"msgid": wire.LoginAck, "errno": wire.OK, "id": r.uid, "name": resp.Name, "errmsg": ""}
	ack["friends"] = friendObjects(friends)
	objs := make([]map[string]any, len(groups))
	for i, g := range groups {
		objs[i] = groupObject(g)
	}
	ack["groups"] = objs
	if len(missing) > 0 {
		ack["incomplete"] = missing
	}
	if resp.ResumeToken != "" {
		ack["token"] = resp.ResumeToken
	}
	ack["lastseq"] = start
	ack["pending"] = last - start
	if len(r.reqid) > 0 {
		ack["reqid"] = rawJSON(r.reqid)
	}
	s.send(ack, false)
}

// sendLegacyLoginAckLocked sends the original client's LOGIN_ACK, within
// its 1024-byte buffer, with the offline messages that fit; it returns the
// messages still to replay. Call with s.mu held.
func (s *Session) sendLegacyLoginAckLocked(uid int64, name string, friends []api.Profile, groups []api.Group,
	msgs []api.InboxMessage) []api.InboxMessage {
	frame, carried, err := legacyLoginAck(uid, name, friends, groups, msgs)
	if err != nil {
		s.log().Error("login ack not sent; closing", "err", err)
		s.sendClosingAs(true, wire.Login, wire.Internal, "internal error")
		return nil
	}
	f := s.terminate(frame)
	var ok bool
	switch {
	case len(carried) == 0:
		ok = s.conn.Send(f)
	case s.conn.Records():
		ok = s.conn.SendMarked(f, uid, carried[len(carried)-1].Seq)
	default:
		if ok = s.conn.Send(f); ok {
			s.hub.acks.ack(uid, carried[len(carried)-1].Seq)
		}
	}
	if ok {
		s.hub.m.framesOut[wire.LoginAck].Inc()
		s.hub.m.pushed.Add(float64(len(carried)))
	}
	if len(carried) > 0 {
		s.cur.Deliver(carried[len(carried)-1].Seq)
	}
	return msgs[len(carried):]
}
