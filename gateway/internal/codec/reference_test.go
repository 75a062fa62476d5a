package codec

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/wire"
)

// The reference: every frame built the generic way, as the session built
// it before this package (gateway/internal/session: handlers.go, social.go,
// deliver.go, legacy.go, session.go), with wire.Parse, wire.Object's readers and
// maps encoded by encoding/json (api.Marshal), not by wire's own encoder.
// Each codec function is held against it.

// refMarshal is api.Marshal of a value that always encodes.
func refMarshal(v any) []byte {
	b, err := api.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("reference: encode %T: %v", v, err))
	}
	return b
}

// refSet stores v, encoded by api.Marshal, under field.
func refSet(o wire.Object, field string, v any) { o[field] = refMarshal(v) }

// refEncode is api.Marshal of the object's map: keys sorted, values
// compacted, nothing HTML-escaped.
func refEncode(o wire.Object) []byte { return refMarshal(map[string]json.RawMessage(o)) }

var refControlFields = []string{"reqid", "cid", "mid", "seq", "dialect", "lastseq", "password", "token"}

func refPositiveID(o wire.Object, field string) (int64, error) {
	id, err := o.Int(field)
	if err == nil && id <= 0 {
		err = &wire.FieldError{Field: field, Reason: "must be a positive id"}
	}
	return id, err
}

func refChatFields(o wire.Object, err error) (cid string, _ error) {
	if err == nil {
		_, err = o.String("msg")
	}
	if err == nil {
		cid, _, err = o.OptString("cid")
		if err == nil && len(cid) > api.MaxCIDLen {
			err = &wire.FieldError{Field: "cid", Reason: fmt.Sprintf("must be at most %d bytes", api.MaxCIDLen)}
		}
	}
	if err == nil && o.Has("time") {
		_, err = o.String("time")
	}
	if err == nil && !utf8.Valid(o["msg"]) {
		err = &wire.FieldError{Field: "msg", Reason: "must be valid UTF-8"}
	}
	return cid, err
}

// refCheckChat is handleOneChat's and handleGroupChat's checks.
func refCheckChat(o wire.Object, msgid wire.MsgID) (Chat, error) {
	target := "toid"
	if msgid == wire.GroupChat {
		target = "groupid"
	}
	to, err := refPositiveID(o, target)
	cid, err := refChatFields(o, err)
	if err != nil {
		return Chat{}, err
	}
	return Chat{To: to, CID: cid}, nil
}

// refChatBody is chatBody, with now given.
func refChatBody(o wire.Object, msgid wire.MsgID, uid int64, name string, now time.Time) []byte {
	for _, f := range refControlFields {
		delete(o, f)
	}
	refSet(o, "msgid", msgid)
	refSet(o, "id", uid)
	refSet(o, "name", name)
	{ // the server's clock, always: a sender cannot forge what a client shows
		refSet(o, "time", now.Format(time.DateTime))
	}
	return refEncode(o)
}

// refPush is emitLocked's full-dialect frame.
func refPush(body []byte, mid string, seq int64) ([]byte, wire.MsgID, error) {
	o, err := wire.Parse(body)
	if err != nil {
		return nil, 0, err
	}
	id, _ := o.Int("msgid")
	refSet(o, "mid", mid)
	refSet(o, "seq", seq)
	return refEncode(o), wire.MsgID(id), nil
}

// refLegacyPush is emitLocked's legacy frame.
func refLegacyPush(body []byte) ([]byte, wire.MsgID, error) {
	o, err := wire.Parse(body)
	if err != nil {
		return nil, 0, err
	}
	id, _ := o.Int("msgid")
	return refFitChat(o), wire.MsgID(id), nil
}

const (
	refLegacyRecord   = 1024
	refLegacyMaxFrame = refLegacyRecord - 1
	refCutMarker      = " [... cut: too long for this client; a full-dialect client shows it all]"
)

// refAppendRecord is legacy.go's appendRecord.
func refAppendRecord(dst, frame []byte) []byte {
	dst = append(dst, frame...)
	for len(dst)%refLegacyRecord != 0 || len(dst) == 0 {
		dst = append(dst, 0)
	}
	return dst
}

// refFitChat is legacy.go's fitChat, with one fix (see below).
func refFitChat(o wire.Object) []byte {
	enc := refEncode(o)
	if len(enc) <= refLegacyMaxFrame {
		return enc
	}
	msg, err := o.String("msg")
	if err != nil {
		msg = ""
	}
	fit := func(o wire.Object) []byte {
		refSet(o, "msg", refCutMarker)
		base := len(refEncode(o))
		room := refLegacyMaxFrame - base
		if room < 0 {
			return nil
		}
		n := min(len(msg), room)
		for n >= 0 {
			// legacy.go tests msg[n] before n < len(msg) and panics
			// (index out of range) when the text is short but too long
			// once encoded; the reference tests them in the safe order.
			for n > 0 && n < len(msg) && !utf8.RuneStart(msg[n]) {
				n--
			}
			refSet(o, "msg", msg[:n]+refCutMarker)
			if enc := refEncode(o); len(enc) <= refLegacyMaxFrame {
				return enc
			}
			n -= max(1, (len(refEncode(o))-refLegacyMaxFrame)/6)
		}
		return nil
	}
	if enc := fit(o); enc != nil {
		return enc
	}
	slim := wire.Object{}
	for _, k := range []string{"msgid", "id", "name", "toid", "groupid", "time"} {
		if v, ok := o[k]; ok && len(v) < 128 {
			slim[k] = v
		}
	}
	if enc := fit(slim); enc != nil {
		return enc
	}
	slim = wire.Object{"msgid": o["msgid"]}
	refSet(slim, "msg", refCutMarker)
	return refEncode(slim)
}

type refRawJSON []byte

func (r refRawJSON) MarshalJSON() ([]byte, error) { return r, nil }

// refReply is sendOK (with storeReply's and handleAck's extras) and
// sendError. nil: no frame.
func refReply(r *Reply) []byte {
	if r.Errno == wire.OK {
		if r.Legacy {
			return nil
		}
		extra := map[string]any{}
		if r.HasMID {
			extra["mid"] = r.MID
		}
		if r.Duplicate {
			extra["duplicate"] = true
		}
		if r.HasSeq {
			extra["seq"] = r.Seq
		}
		if len(r.Refused) > 0 {
			extra["refused"] = r.Refused
		}
		m := map[string]any{"msgid": wire.Reply, "re": r.Re, "errno": wire.OK, "errmsg": ""}
		maps.Copy(m, extra)
		if len(r.ReqID) > 0 {
			m["reqid"] = refRawJSON(r.ReqID)
		}
		return refMarshal(m)
	}
	m := map[string]any{"errno": r.Errno, "errmsg": r.Errmsg}
	switch r.Re {
	case wire.Login:
		m["msgid"] = wire.LoginAck
	case wire.Reg:
		m["msgid"] = wire.RegAck
	case wire.Kicked:
		m["msgid"] = wire.Kicked
	default:
		m["msgid"] = wire.Reply
		if r.Re != 0 && r.Re != wire.Reply {
			m["re"] = r.Re
		}
	}
	if len(r.ReqID) > 0 && !r.Legacy {
		m["reqid"] = refRawJSON(r.ReqID)
	}
	return refMarshal(m)
}

// refPong is handle's answer to a PING.
func refPong(reqid []byte) []byte {
	m := map[string]any{"msgid": wire.Pong}
	if len(reqid) > 0 {
		m["reqid"] = refRawJSON(reqid)
	}
	return refMarshal(m)
}

// objectText is o with its values as strings, for comparisons.
func objectText(o wire.Object) map[string]string {
	out := make(map[string]string, len(o))
	for k, v := range o {
		out[k] = string(v)
	}
	return out
}

// sortedKeys lists o's keys, sorted.
func sortedKeys(o wire.Object) []string {
	return slices.Sorted(maps.Keys(o))
}

// sameError reports whether two errors are both nil, or both
// *wire.FieldError with the same text (what the client is told), or both
// other errors.
func sameError(got, want error) bool {
	if got == nil || want == nil {
		return got == nil && want == nil
	}
	var g, w *wire.FieldError
	gf, wf := errors.As(got, &g), errors.As(want, &w)
	return gf == wf && (!gf || got.Error() == want.Error())
}
