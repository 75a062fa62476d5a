package codec

import (
	"strconv"

	"github.com/natter-chat/natter/shared/wire"
)

// MsgMalformed is the errmsg of the reply to a frame Scan refuses (errno
// wire.BadJSON).
const MsgMalformed = "malformed frame: want one JSON object"

// Reply is the answer to one request, success or error, in either dialect.
type Reply struct {
	Re     wire.MsgID // the request's msgid; 0 when it had none (a malformed frame)
	Errno  wire.Errno // wire.OK for success
	Errmsg string     // the error's text (errors only)
	ReqID  []byte     // the request's "reqid" as sent (Frame.Raw), echoed in the full dialect
	Legacy bool       // the connection speaks the legacy dialect

	// Extra fields of a success: "mid" when HasMID (a stored chat),
	// "duplicate": true when Duplicate (a chat stored before under the
	// same cid), "seq" when HasSeq (an acknowledgement), "refused" when
	// Refused is not empty (the members of a group whose inbox was full:
	// the message was stored for the others, not for them).
	MID       string
	HasMID    bool
	Duplicate bool
	Seq       int64
	HasSeq    bool
	Refused   []int64
}

// AppendReply appends to dst the frame (without terminator) answering a
// request, as the session's sendOK and sendError build it:
//
//   - success (Errno wire.OK): a REPLY {"msgid":14,"re":Re,"errno":0,
//     "errmsg":""} with the extra fields and "reqid". The legacy dialect
//     gets no answer to a success (the original sends none): nothing is
//     appended.
//   - error: LOGIN_ACK (msgid 2) when Re is wire.Login, REG_ACK (5) for
//     wire.Reg, KICKED (15) for wire.Kicked, else a REPLY naming Re in
//     "re" (left out when Re is 0 or wire.Reply); "errno" and "errmsg";
//     "reqid" in the full dialect. The extra fields are not written.
//
// Keys are sorted as api.Marshal writes a map's. ReqID must be a JSON
// value, as Frame.Raw returns; it is written compacted.
func AppendReply(dst []byte, r *Reply) []byte {
	if r.Errno == wire.OK {
		if r.Legacy {
			return dst
		}
		dst = append(dst, '{')
		if r.Duplicate {
			dst = append(dst, `"duplicate":true,`...)
		}
		dst = append(dst, `"errmsg":"","errno":0`...)
		if r.HasMID {
			dst = appendStringField(dst, "mid", r.MID)
		}
		dst = append(dst, `,"msgid":14,"re":`...)
		dst = strconv.AppendInt(dst, int64(r.Re), 10)
		if len(r.Refused) > 0 {
			dst = append(dst, `,"refused":[`...)
			for i, id := range r.Refused {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = strconv.AppendInt(dst, id, 10)
			}
			dst = append(dst, ']')
		}
		dst = appendReqID(dst, r.ReqID)
		if r.HasSeq {
			dst = appendIntField(dst, "seq", r.Seq)
		}
		return append(dst, '}')
	}
	msgid := wire.Reply
	switch r.Re {
	case wire.Login:
		msgid = wire.LoginAck
	case wire.Reg:
		msgid = wire.RegAck
	case wire.Kicked:
		msgid = wire.Kicked
	}
	dst = append(dst, `{"errmsg":`...)
	dst = wire.AppendString(dst, r.Errmsg)
	dst = appendIntField(dst, "errno", int64(r.Errno))
	dst = appendIntField(dst, "msgid", int64(msgid))
	if msgid == wire.Reply && r.Re != 0 && r.Re != wire.Reply {
		dst = appendIntField(dst, "re", int64(r.Re))
	}
	if !r.Legacy {
		dst = appendReqID(dst, r.ReqID)
	}
	return append(dst, '}')
}

// AppendPong appends to dst the PONG (msgid 12) answering a PING, with the
// PING's "reqid" (Frame.Raw; nil when it had none) echoed, compacted. Both
// dialects get the same frame.
func AppendPong(dst, reqid []byte) []byte {
	dst = append(dst, `{"msgid":12`...)
	return append(appendReqID(dst, reqid), '}')
}

// appendReqID appends `,"reqid":` and reqid, compacted, unless reqid is
// empty.
func appendReqID(dst, reqid []byte) []byte {
	if len(reqid) == 0 {
		return dst
	}
	return wire.AppendCompact(append(dst, `,"reqid":`...), reqid)
}
