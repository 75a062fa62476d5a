package session

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/subject"
	"github.com/natter-chat/natter/shared/wire"
)

func validUTF8(raw []byte) bool { return utf8.Valid(raw) }

// Fields a client may send that are not part of the message itself; they
// are removed before a chat is stored. mid and seq are the server's.
var controlFields = []string{"reqid", "cid", "mid", "seq", "dialect", "lastseq", "password", "token"}

// handle runs one frame from the client.
func (s *Session) handle(frame []byte) {
	o, err := wire.Parse(frame)
	if err != nil {
		s.hub.m.framesIn[0].Inc()
		s.sendError(wire.Reply, nil, wire.BadJSON, "malformed frame: want one JSON object", false)
		return
	}
	reqid := []byte(o["reqid"])
	id, err := o.Int("msgid")
	if err != nil {
		s.hub.m.framesIn[0].Inc()
		s.sendError(wire.Reply, reqid, wire.BadField, err.Error(), false)
		return
	}
	msgid := wire.MsgID(id)
	s.hub.m.framesIn[msgIndex(msgid)].Inc()
	// Acks are cheap (coalesced per user) and a client acking every message
	// it receives must not be throttled by its own acks.
	if msgid != wire.Ack && !s.limiter.Allow() {
		s.hub.m.rateLimited.Inc()
		s.sendError(msgid, reqid, wire.Flood, "too many frames; slow down", false)
		return
	}
	switch msgid {
	case wire.Login:
		s.handleLogin(o, reqid)
		return
	case wire.Reg:
		s.handleReg(o, reqid)
		return
	case wire.Ping:
		m := map[string]any{"msgid": wire.Pong}
		if len(reqid) > 0 {
			m["reqid"] = rawJSON(reqid)
		}
		s.send(m, false)
		return
	case wire.Loginout, wire.OneChat, wire.Ack, wire.AddFriend, wire.CreateGroup, wire.AddGroup, wire.GroupChat,
		wire.RemoveFriend, wire.ListFriends, wire.LeaveGroup, wire.ListGroups, wire.ListMembers:
	default:
		s.sendError(msgid, reqid, wire.UnknownMsgID, fmt.Sprintf("unknown msgid %d", msgid), false)
		return
	}
	uid, name, ok := s.identity()
	if !ok {
		s.sendError(msgid, reqid, wire.NotLoggedIn, "log in first", false)
		return
	}
	switch msgid {
	case wire.Loginout:
		s.handleLoginout(reqid)
	case wire.OneChat:
		s.handleOneChat(o, reqid, uid, name)
	case wire.Ack:
		s.handleAck(o, reqid, uid)
	case wire.AddFriend, wire.RemoveFriend:
		s.handleFriend(msgid, o, reqid, uid)
	case wire.ListFriends:
		s.handleListFriends(reqid, uid)
	case wire.CreateGroup:
		s.handleCreateGroup(o, reqid, uid)
	case wire.AddGroup, wire.LeaveGroup, wire.ListMembers:
		s.handleGroup(msgid, o, reqid, uid)
	case wire.ListGroups:
		s.handleListGroups(reqid, uid)
	case wire.GroupChat:
		s.handleGroupChat(o, reqid, uid, name)
	}
}

// serviceError maps a service error to the wire. Internal text never reaches
// the client; unknown errors are logged here with their context.
func (s *Session) serviceError(op string, err error) (wire.Errno, string) {
	switch {
	case errors.Is(err, api.ErrBadRequest):
		var ae *api.Error
		errors.As(err, &ae)
		return wire.BadField, ae.Message
	case errors.Is(err, api.ErrNotFound):
		return wire.NoSuchUser, "no such user"
	case errors.Is(err, api.ErrBusy), errors.Is(err, api.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		s.log().Warn("service unavailable", "op", op, "err", err)
		return wire.Unavailable, "service unavailable; retry"
	}
	s.log().Error("request failed", "op", op, "err", err)
	return wire.Internal, "internal error"
}

func (s *Session) handleReg(o wire.Object, reqid []byte) {
	name, err := o.String("name")
	if err == nil {
		var pw string
		pw, err = o.String("password")
		if err == nil {
			s.register(name, pw, reqid)
			return
		}
	}
	s.sendError(wire.Reg, reqid, wire.BadField, err.Error(), false)
}

func (s *Session) register(name, password string, reqid []byte) {
	ctx, cancel := s.requestCtx()
	defer cancel()
	var resp api.RegisterResponse
	err := s.hub.m.Call(ctx, s.hub.nc, subject.UserRegister, api.RegisterRequest{Name: name, Password: password}, &resp)
	legacy := s.legacy()
	switch {
	case err == nil:
		m := map[string]any{"msgid": wire.RegAck, "errno": wire.OK, "id": resp.ID}
		if !legacy {
			m["name"] = name
			m["errmsg"] = ""
			if len(reqid) > 0 {
				m["reqid"] = rawJSON(reqid)
			}
		}
		s.send(m, false)
		s.hub.users.remember(resp.ID)
	case errors.Is(err, api.ErrNameTaken):
		if legacy {
			s.send(map[string]any{"msgid": wire.RegAck, "errno": wire.RegFailed}, false)
			return
		}
		s.sendError(wire.Reg, reqid, wire.RegFailed, "name is already taken", false)
	case errors.Is(err, api.ErrBadRequest):
		var ae *api.Error
		errors.As(err, &ae)
		s.sendError(wire.Reg, reqid, wire.BadRegistration, ae.Message, false)
	default:
		errno, msg := s.serviceError("register", err)
		s.sendError(wire.Reg, reqid, errno, msg, false)
	}
}

func (s *Session) handleLogin(o wire.Object, reqid []byte) {
	uid, err := o.Int("id")
	var pw, token, dname string
	var lastSeq int64
	var hasLast, hasToken bool
	if err == nil {
		// A password, or the resume token of an earlier login.
		token, hasToken, err = o.OptString("token")
	}
	if err == nil && !hasToken {
		pw, err = o.String("password")
	}
	if err == nil {
		dname, _, err = o.OptString("dialect")
	}
	if err == nil {
		lastSeq, hasLast, err = o.OptInt("lastseq")
	}
	tok := 0 // the method, for the login counters
	if hasToken {
		tok = 1
	}
	if err != nil {
		s.hub.m.logins[tok][loginInvalid].Inc()
		s.sendError(wire.Login, reqid, wire.BadField, err.Error(), false)
		return
	}
	d := dialectFull
	switch {
	case dname == "full":
	case dname == "legacy":
		d = dialectLegacy
	case dname != "":
		s.hub.m.logins[tok][loginInvalid].Inc()
		s.sendError(wire.Login, reqid, wire.BadField, `field "dialect" must be "full" or "legacy"`, false)
		return
	case byte(s.term.Load()) == wire.TermNUL:
		d = dialectLegacy
	}
	if uid <= 0 {
		s.hub.m.logins[tok][loginInvalid].Inc()
		s.sendError(wire.Login, reqid, wire.LoginInvalid, wire.MsgLoginInvalid, false)
		return
	}

	s.mu.Lock()
	if s.state != stateNone {
		s.mu.Unlock()
		s.hub.m.logins[tok][loginInvalid].Inc()
		s.sendError(wire.Login, reqid, wire.AlreadyLoggedIn, "already logged in on this connection", false)
		return
	}
	sid := uuid.NewString()
	s.gen++
	gen := s.gen
	s.state, s.uid, s.sid, s.dialect = stateLogging, uid, sid, d
	s.syncing, s.pending, s.overflow, s.delivered = true, nil, false, 0
	s.mu.Unlock()

	// Subscribe before claiming the session: a kick for this session, or a
	// message stored after the claim, cannot then be missed.
	if err := s.hub.router.attach(uid, s); err != nil {
		s.endLogin()
		s.hub.m.logins[tok][loginError].Inc()
		errno, msg := s.serviceError("login subscribe", err)
		s.sendError(wire.Login, reqid, errno, msg, false)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*s.hub.opts.RequestTimeout)
	defer cancel()
	var resp api.LoginResponse
	err = s.hub.m.Call(ctx, s.hub.nc, subject.UserLogin, api.LoginRequest{
		UserID: uid, Password: pw, ResumeToken: token, GatewayID: s.hub.opts.GatewayID, SessionID: sid,
	}, &resp)
	if err != nil {
		s.endLogin()
		switch {
		case errors.Is(err, api.ErrBadLogin), errors.Is(err, api.ErrBadRequest):
			s.hub.m.logins[tok][loginInvalid].Inc()
			s.sendError(wire.Login, reqid, wire.LoginInvalid, wire.MsgLoginInvalid, false)
		case errors.Is(err, api.ErrSessionLive):
			s.hub.m.logins[tok][loginInUse].Inc()
			s.sendError(wire.Login, reqid, wire.LoginInUse, wire.MsgLoginInUse, false)
		default:
			s.hub.m.logins[tok][loginError].Inc()
			// The claim may have committed before the answer was lost:
			// release it, or under the reject policy the user would be
			// locked out until this gateway stops.
			s.hub.logouts.add(uid, sid, false)
			errno, msg := s.serviceError("login", err)
			s.sendError(wire.Login, reqid, errno, msg, false)
		}
		return
	}
	s.hub.users.remember(uid)

	var (
		friends []api.Profile
		groups  []api.Group
		missing []string
		lists   = make(chan struct{})
	)
	go func() {
		defer close(lists)
		friends, groups, missing = s.loginLists(ctx, uid)
	}()
	first, err := s.fetch(ctx, uid, -1)
	<-lists
	if err != nil {
		s.endLogin()
		s.hub.logouts.add(uid, sid, false)
		s.hub.m.logins[tok][loginError].Inc()
		errno, msg := s.serviceError("login fetch", err)
		s.sendError(wire.Login, reqid, errno, msg, false)
		return
	}
	start := first.Acked
	if hasLast && lastSeq > start {
		// The client says it already has everything up to lastseq (it
		// acknowledged it on a connection that died before the ack landed).
		start = min(lastSeq, first.Last)
		s.hub.acks.ack(uid, start)
	}
	if d == dialectLegacy {
		// Records of an earlier login on this connection are read before
		// anything written now: go on after them.
		if w := s.legacyWritten(uid); w > start {
			start = min(w, first.Last)
		}
	}

	s.mu.Lock()
	if s.kicked {
		s.mu.Unlock()
		s.endLogin()
		s.hub.m.logins[tok][loginError].Inc()
		s.setReason(reasonKicked)
		s.sendClosingAs(d == dialectLegacy, wire.Login, wire.SessionReplaced, "logged in elsewhere; this session is closed")
		return
	}
	s.state, s.name, s.delivered = stateLive, resp.Name, start
	s.hub.m.logins[tok][loginOK].Inc()
	s.hub.m.sessions.Inc()
	msgs := first.Messages
	for len(msgs) > 0 && msgs[0].Seq <= start {
		msgs = msgs[1:]
	}
	if d == dialectLegacy {
		// The original client's LOGIN_ACK, within its 1024-byte buffer:
		// the offline messages that do not fit follow as pushes.
		frame, carried := legacyLoginAck(uid, resp.Name, friends, groups, msgs)
		f := outFrame{data: s.terminate(frame, true), msgs: int32(len(carried)), msgid: uint8(wire.LoginAck)}
		if len(carried) > 0 {
			s.delivered = carried[len(carried)-1].Seq
			f.ackUID, f.ackSeq = uid, s.delivered
			msgs = msgs[len(carried):]
		}
		s.enqueue(f)
	} else {
		ack := map[string]any{"msgid": wire.LoginAck, "errno": wire.OK, "id": uid, "name": resp.Name}
		ack["friends"] = friendObjects(friends)
		objs := make([]map[string]any, len(groups))
		for i, g := range groups {
			objs[i] = groupObject(g)
		}
		ack["groups"] = objs
		if len(missing) > 0 {
			ack["incomplete"] = missing
		}
		ack["errmsg"] = ""
		if resp.ResumeToken != "" {
			ack["token"] = resp.ResumeToken
		}
		ack["lastseq"] = start
		ack["pending"] = first.Last - start
		if len(reqid) > 0 {
			ack["reqid"] = rawJSON(reqid)
		}
		s.enqueue(outFrame{data: s.terminate(wire.Marshal(ack), false), msgid: uint8(wire.LoginAck)})
	}
	s.mu.Unlock()
	s.log().Info("login", "user_id", uid, "dialect", map[bool]string{true: "legacy", false: "full"}[d == dialectLegacy])

	// The replay takes as long as the client needs to read it: each fetch
	// has its own deadline, the whole has none but the connection's life.
	more := len(first.Messages) > 0 && first.Messages[len(first.Messages)-1].Seq < first.Last
	if err := s.catchUp(context.Background(), gen, uid, msgs, more); err != nil {
		s.log().Warn("replay failed; closing so the client resumes", "err", err)
		s.setReason(reasonDelivery)
		s.sendClosing(wire.Reply, wire.Unavailable, "delivery interrupted; reconnect")
	}
}

// handleLoginout ends the session and answers once the user service has
// released it (or after a request timeout; the release is retried), so a
// login elsewhere right after the answer is not refused as a second one.
func (s *Session) handleLoginout(reqid []byte) {
	uid, sid, ok := s.endLogin()
	if ok {
		select {
		case <-s.hub.logouts.add(uid, sid, true): // explicit: revoke the resume token
		case <-time.After(s.hub.opts.RequestTimeout):
			s.log().Warn("logout not confirmed yet; it is retried", "user_id", uid)
		}
	}
	s.sendOK(wire.Loginout, reqid, nil)
}

// handleOneChat stores a chat for its recipient and acknowledges the sender
// once it is committed. The sender's id and name come from the session.
func (s *Session) handleOneChat(o wire.Object, reqid []byte, uid int64, name string) {
	toid, err := positiveID(o, "toid")
	cid, err := s.chatFields(o, err)
	if err != nil {
		s.sendError(wire.OneChat, reqid, wire.BadField, err.Error(), false)
		return
	}
	ctx, cancel := s.requestCtx()
	defer cancel()
	exists, err := s.hub.users.exists(ctx, toid)
	if err != nil {
		errno, msg := s.serviceError("lookup recipient", err)
		s.sendError(wire.OneChat, reqid, errno, msg, false)
		return
	}
	if !exists {
		s.sendError(wire.OneChat, reqid, wire.NoSuchUser, fmt.Sprintf("no such user: %d", toid), false)
		return
	}
	body := s.chatBody(o, wire.OneChat, uid, name)
	var resp api.StoreResponse
	err = s.hub.m.Call(ctx, s.hub.nc, subject.OfflineStore,
		api.StoreRequest{From: uid, To: []int64{toid}, CID: cid, Body: body}, &resp)
	if err != nil {
		errno, msg := s.serviceError("store chat", err)
		s.sendError(wire.OneChat, reqid, errno, msg, false)
		return
	}
	s.sendOK(wire.OneChat, reqid, storeReply(resp))
}

// handleAck records a cumulative delivery acknowledgement. An ack beyond what
// this session delivered is clamped to it.
func (s *Session) handleAck(o wire.Object, reqid []byte, uid int64) {
	seq, err := o.Int("seq")
	if err == nil && seq < 0 {
		err = &wire.FieldError{Field: "seq", Reason: "must not be negative"}
	}
	if err != nil {
		s.sendError(wire.Ack, reqid, wire.BadField, err.Error(), false)
		return
	}
	s.mu.Lock()
	seq = min(seq, s.delivered)
	s.mu.Unlock()
	s.hub.acks.ack(uid, seq)
	if len(reqid) == 0 {
		return
	}
	// An ack with a reqid is answered once it is stored: the client may then
	// forget everything up to seq.
	ctx, cancel := s.requestCtx()
	defer cancel()
	if err := s.hub.acks.flushUsers(ctx, []int64{uid}); err != nil {
		errno, msg := s.serviceError("ack", err)
		s.sendError(wire.Ack, reqid, errno, msg, false)
		return
	}
	s.sendOK(wire.Ack, reqid, map[string]any{"seq": seq})
}
