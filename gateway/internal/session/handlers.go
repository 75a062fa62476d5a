package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/natter-chat/natter/gateway/internal/codec"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/subject"
	"github.com/natter-chat/natter/shared/wire"
)

// framePool holds scanned frames for reuse (gateway/internal/codec): a
// frame is scanned without allocating once its Frame has grown.
var framePool = sync.Pool{New: func() any { return new(codec.Frame) }}

// handle runs one frame from the client: a PING or an ACK is answered at
// once, anything that asks a service is answered when the service has.
func (s *Session) handle(frame []byte) {
	f := framePool.Get().(*codec.Frame)
	defer framePool.Put(f)
	if err := codec.Scan(frame, f); err != nil {
		s.hub.m.framesIn[0].Inc()
		s.sendError(wire.Reply, nil, wire.BadJSON, codec.MsgMalformed, false)
		return
	}
	reqid := f.Raw("reqid")
	id, err := f.Int("msgid")
	if err != nil {
		s.hub.m.framesIn[0].Inc()
		s.sendError(wire.Reply, reqid, wire.BadField, err.Error(), false)
		return
	}
	msgid := wire.MsgID(id)
	s.hub.m.framesIn[msgIndex(msgid)].Inc()
	// Acks are cheap (coalesced per user) and a client acking every message
	// it receives must not be throttled by its own acks.
	if msgid != wire.Ack && !s.allow() {
		s.hub.m.rateLimited.Inc()
		if n := s.floodDropped(time.Now()); n > 0 {
			s.sendFloodNotice(msgid, reqid, n)
		}
		return
	}
	switch msgid {
	case wire.Ping:
		s.sendPong(reqid)
		return
	case wire.Login:
		s.handleLogin(f.Object(), reqid)
		return
	case wire.Reg:
		s.handleReg(f.Object(), reqid)
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
		return
	case wire.OneChat, wire.GroupChat:
		s.handleChat(msgid, f, reqid, uid, name)
		return
	case wire.Ack:
		s.handleAck(f, reqid, uid)
		return
	}
	o := f.Object() // the rarer requests work on a map
	switch msgid {
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
	}
}

// allow takes a token of the connection's flood limit.
func (s *Session) allow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flood.allow(time.Now(), s.hub.opts.FloodRate, s.hub.opts.FloodBurst)
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
	case errors.Is(err, api.ErrInboxFull):
		return wire.InboxFull, "recipient's inbox is full; retry once they have read"
	case errors.Is(err, api.ErrSendRate):
		return wire.SendRate, "sending too fast; retry later"
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
			s.register(name, pw, append([]byte(nil), reqid...))
			return
		}
	}
	s.sendError(wire.Reg, reqid, wire.BadField, err.Error(), false)
}

// register asks the user service for an account, on a goroutine of its own.
// Not sent twice: a second attempt would find the name taken.
func (s *Session) register(name, password string, reqid []byte) {
	s.goRequest(func() {
		ctx, cancel := s.requestCtx()
		defer cancel()
		var resp api.RegisterResponse
		err := s.hub.c.call(ctx, subject.UserRegister, api.RegisterRequest{Name: name, Password: password}, &resp, false)
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
	})
}

// handleLoginout ends the session at once (nothing sent after it is routed
// here) and answers once the user service has released it (or after a
// request timeout; the release is retried), so a login elsewhere right
// after the answer is not refused as a second one.
func (s *Session) handleLoginout(reqid []byte) {
	uid, sid, ok := s.endLogin()
	reqid = append([]byte(nil), reqid...)
	s.mu.Lock()
	s.gate = true // what the client sends next waits for the release
	s.mu.Unlock()
	var released <-chan struct{}
	if ok {
		released = s.hub.logouts.add(uid, sid, true) // explicit: revoke the resume token
	}
	s.goRequest(func() {
		defer s.release()
		if ok {
			t := time.NewTimer(s.hub.opts.RequestTimeout)
			defer t.Stop()
			select {
			case <-released:
			case <-t.C:
				s.log().Warn("logout not confirmed yet; it is retried", "user_id", uid)
			}
		}
		s.sendOK(wire.Loginout, reqid, nil)
	})
}
