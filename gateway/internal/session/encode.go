package session

import (
	"github.com/natter-chat/natter/gateway/internal/codec"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/wire"
)

// Frames to the client. Every frame is encoded here, in the dialect of the
// session, ended with the connection's terminator, and counted.

// terminate ends an encoded frame with the connection's terminator.
func (s *Session) terminate(b []byte) []byte {
	return append(b, s.conn.Term())
}

// send queues a frame built from m, which has a "msgid" of type wire.MsgID.
// last closes the connection after it. A frame that cannot be encoded (a
// bug: m holds only numbers, strings and the services' answers) is not
// sent; the connection is closed with an internal error instead.
func (s *Session) send(m map[string]any, last bool) bool {
	id, _ := m["msgid"].(wire.MsgID)
	f, err := api.Marshal(m)
	if err != nil {
		s.log().Error("frame not sent; closing", "msgid", id, "err", err)
		s.sendClosing(0, wire.Internal, "internal error")
		return false
	}
	return s.sendFrame(s.terminate(f), id, last)
}

// sendFrame queues an encoded frame and counts it.
func (s *Session) sendFrame(f []byte, id wire.MsgID, last bool) bool {
	var ok bool
	if last {
		ok = s.conn.SendLast(f)
	} else {
		ok = s.conn.Send(f)
	}
	if ok {
		s.hub.m.framesOut[msgIndex(id)].Inc()
	}
	return ok
}

// sendError answers a request with an error, in both dialects (the original
// client ignores msgids it does not know). For LOGIN and REG the answer is
// their own ack type; everything else gets a Reply naming the request.
func (s *Session) sendError(re wire.MsgID, reqid []byte, errno wire.Errno, errmsg string, last bool) {
	r := codec.Reply{Re: re, Errno: errno, Errmsg: errmsg, ReqID: reqid, Legacy: s.legacy()}
	s.sendFrame(s.terminate(codec.AppendReply(nil, &r)), replyID(re), last)
}

// replyID is the msgid of the error answer to a request re.
func replyID(re wire.MsgID) wire.MsgID {
	switch re {
	case wire.Login:
		return wire.LoginAck
	case wire.Reg:
		return wire.RegAck
	case wire.Kicked:
		return wire.Kicked
	}
	return wire.Reply
}

// sendOK answers a request that succeeded. The legacy dialect gets no answer
// (the original sends none); the full dialect gets a Reply with extra fields.
func (s *Session) sendOK(re wire.MsgID, reqid []byte, extra map[string]any) {
	if s.legacy() {
		return
	}
	m := map[string]any{"msgid": wire.Reply, "re": re, "errno": wire.OK, "errmsg": ""}
	for k, v := range extra {
		m[k] = v
	}
	if len(reqid) > 0 {
		m["reqid"] = rawJSON(reqid)
	}
	s.send(m, false)
}

// sendReply sends a hot path's answer (a stored chat, an acknowledgement).
func (s *Session) sendReply(r *codec.Reply) {
	r.Legacy = s.legacy()
	f := codec.AppendReply(nil, r)
	if len(f) == 0 {
		return // a success in the legacy dialect: the original sends nothing
	}
	s.sendFrame(s.terminate(f), wire.Reply, false)
}

// pongs are the answers to a PING without a reqid, ended by '\n' and by
// NUL: shared, never written to (an idle client's pings allocate nothing).
var pongs = [2][]byte{[]byte(`{"msgid":12}` + "\n"), []byte(`{"msgid":12}` + "\x00")}

// sendPong answers a PING.
func (s *Session) sendPong(reqid []byte) {
	if len(reqid) == 0 {
		f := pongs[0]
		if s.conn.Term() == wire.TermNUL {
			f = pongs[1]
		}
		s.sendFrame(f[:len(f):len(f)], wire.Pong, false)
		return
	}
	s.sendFrame(s.terminate(codec.AppendPong(nil, reqid)), wire.Pong, false)
}

// sendClosing tells the client why its connection is closed, then closes
// it: an error frame for the full dialect, a line the original client
// shows (it ignores every frame it does not print) for the legacy one.
func (s *Session) sendClosing(re wire.MsgID, errno wire.Errno, errmsg string) {
	s.sendClosingAs(s.legacy(), re, errno, errmsg)
}

// sendClosingAs is sendClosing for a session whose dialect was legacy or
// not before its login ended.
func (s *Session) sendClosingAs(legacy bool, re wire.MsgID, errno wire.Errno, errmsg string) {
	if legacy {
		s.sendFrame(s.terminate(legacyNotice(errmsg)), wire.OneChat, true)
		return
	}
	s.sendError(re, nil, errno, errmsg, true)
}

// encodePush turns an inbox message into the frame its recipient gets:
// the stored body with mid and seq (full dialect), or the body cut to
// fit the original client (legacy). ok is false for a body that cannot be
// decoded (the offline service stores only objects the gateway built).
func encodePush(m api.InboxMessage, legacy bool) (frame []byte, id wire.MsgID, ok bool) {
	var err error
	if legacy {
		frame, id, err = codec.AppendLegacyPush(nil, m.Body)
	} else {
		frame, id, err = codec.AppendPush(nil, m.Body, m.MID, m.Seq)
	}
	return frame, id, err == nil
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }
