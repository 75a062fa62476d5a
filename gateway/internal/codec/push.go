package codec

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	"github.com/natter-chat/natter/shared/wire"
)

// AppendPush appends to dst the full-dialect frame (without terminator)
// that delivers a stored message: body (as the offline service keeps it)
// with "mid" and "seq" set, keys sorted: the bytes of wire.Parse(body),
// SetString("mid", mid), SetInt("seq", seq), Encode(). msgid is the body's "msgid"
// (0 when it has no integer one), for the frame counters.
//
// A body in the shape the gateway stores (compact, keys sorted, given once,
// printable ASCII) is copied with the two fields inserted, allocating
// nothing; any other object goes the generic way. A body that is not a JSON
// object is an error, and dst comes back unchanged.
func AppendPush(dst, body []byte, mid string, seq int64) (out []byte, msgid wire.MsgID, err error) {
	n := len(dst)
	if out, msgid, ok := appendStored(dst, body, mid, seq, true); ok {
		return out, msgid, nil
	}
	dst = dst[:n]
	o, err := wire.Parse(body)
	if err != nil {
		return dst, 0, err
	}
	id, _ := o.Int("msgid")
	o.SetString("mid", mid)
	o.SetInt("seq", seq)
	return append(dst, o.Encode()...), wire.MsgID(id), nil
}

// AppendLegacyPush appends to dst the frame (without terminator) that
// delivers a stored message to the original client: the body re-encoded
// (wire.Parse(body).Encode()), and if that is longer than LegacyMaxFrame
// bytes, cut to fit as the session's fitChat always has (the text of "msg"
// shortened at a character boundary and CutMarker appended; long extra
// fields dropped if even that does not fit). msgid and the error are
// AppendPush's.
func AppendLegacyPush(dst, body []byte) (out []byte, msgid wire.MsgID, err error) {
	if len(body) <= LegacyMaxFrame {
		if out, msgid, ok := appendStored(dst, body, "", 0, false); ok {
			return out, msgid, nil
		}
	}
	o, err := wire.Parse(body)
	if err != nil {
		return dst, 0, err
	}
	id, _ := o.Int("msgid")
	return append(dst, fitChat(o)...), wire.MsgID(id), nil
}

// appendStored appends body, with "mid" and "seq" inserted at their sorted
// places (or replacing fields of those names) when push is set, if body is
// in the shape wire.Object.Encode writes and the gateway stores: one JSON
// object, no whitespace, keys of printable ASCII without escapes given in
// strictly increasing order. Encoding such a body again changes nothing,
// so copying it is exact. ok is false for any other body (which may be
// valid JSON all the same); dst may then hold part of the frame: cut it
// back.
func appendStored(dst, body []byte, mid string, seq int64, push bool) (out []byte, msgid wire.MsgID, ok bool) {
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return dst, 0, false
	}
	// next is the first field still to insert: 0 "mid", 1 "seq", 2 none.
	next := 0
	if !push {
		next = 2
	}
	var prev []byte
	from := 0 // body[from:] is not copied yet
	if len(body) > 2 {
		for i := 1; ; {
			if body[i] != '"' {
				return dst, 0, false
			}
			kend, kfl, ok := scanString(body, i)
			if !ok || kfl != 0 || kend == len(body) || body[kend] != ':' {
				return dst, 0, false
			}
			key := body[i+1 : kend-1]
			if prev != nil && bytes.Compare(prev, key) >= 0 {
				return dst, 0, false
			}
			prev = key
			vend, vfl, ok := scanValue(body, kend+1, 1)
			if !ok || vfl&valSpace != 0 || vend == len(body) {
				return dst, 0, false
			}
			if vfl&valInt != 0 && string(key) == "msgid" {
				if n, ok := parseInt(body[kend+1 : vend]); ok {
					msgid = wire.MsgID(n)
				}
			}
			for next < 2 {
				c := bytes.Compare(key, pushKeys[next])
				if c < 0 {
					break
				}
				dst = append(dst, body[from:i]...)
				dst = appendPushField(dst, next, mid, seq)
				next++
				if c == 0 { // the body's own field of that name is replaced
					from = vend
					break
				}
				dst = append(dst, ',')
				from = i
			}
			if body[vend] == '}' {
				if vend != len(body)-1 {
					return dst, 0, false
				}
				break
			}
			if body[vend] != ',' {
				return dst, 0, false
			}
			i = vend + 1
		}
	}
	dst = append(dst, body[from:len(body)-1]...)
	for ; next < 2; next++ {
		if dst[len(dst)-1] != '{' {
			dst = append(dst, ',')
		}
		dst = appendPushField(dst, next, mid, seq)
	}
	return append(dst, '}'), msgid, true
}

var pushKeys = [2][]byte{[]byte("mid"), []byte("seq")}

func appendPushField(dst []byte, which int, mid string, seq int64) []byte {
	if which == 0 {
		dst = append(dst, `"mid":`...)
		return wire.AppendString(dst, mid)
	}
	dst = append(dst, `"seq":`...)
	return strconv.AppendInt(dst, seq, 10)
}

// The original C++ client reads with one recv(fd, buf, 1024) per frame
// and parses the buffer as a C string (docs/protocol.md, "The original
// client"): on TCP every legacy frame goes out as one record of
// LegacyRecord bytes, the frame, its NUL and NUL filler, and no frame may
// be longer than LegacyMaxFrame.
const (
	LegacyRecord   = 1024
	LegacyMaxFrame = LegacyRecord - 1
)

// AppendRecord appends frame (without terminator) to dst as one legacy
// record: the frame, then NULs up to LegacyRecord bytes. ok is false, and
// nothing is appended, when frame is longer than LegacyMaxFrame.
func AppendRecord(dst, frame []byte) (out []byte, ok bool) {
	if len(frame) > LegacyMaxFrame {
		return dst, false
	}
	dst = append(dst, frame...)
	return append(dst, nulFill[:LegacyRecord-len(frame)]...), true
}

// nulFill is a record's worth of NULs (never written).
var nulFill [LegacyRecord]byte

// CutMarker ends a chat text that was cut to fit the original client.
const CutMarker = " [... cut: too long for this client; a full-dialect client shows it all]"

// fitChat encodes a chat body for the original client. A body whose frame
// would not fit LegacyMaxFrame bytes gets its "msg" cut at a character
// boundary and CutMarker appended; if even that cannot fit (long extra
// fields), only the original's fields are kept. It is the session's
// fitChat (gateway/internal/session/legacy.go) with one fix: that one
// indexes msg[len(msg)] and panics when the text is shorter in bytes than
// the room left but too long once encoded (600 quotes, 200 control
// characters).
func fitChat(o wire.Object) []byte {
	enc := o.Encode()
	if len(enc) <= LegacyMaxFrame {
		return enc
	}
	msg, err := o.String("msg")
	if err != nil {
		msg = ""
	}
	fit := func(o wire.Object) []byte {
		o.SetString("msg", CutMarker)
		base := len(o.Encode()) // the frame with only the marker as text
		room := LegacyMaxFrame - base
		if room < 0 {
			return nil
		}
		// Each byte of text costs at most 6 bytes encoded (\u00XX); cut
		// generously, then shrink until it fits.
		n := min(len(msg), room)
		for n >= 0 {
			// n < len(msg) first: a text that is short but long once
			// encoded (quotes, control characters) starts with n ==
			// len(msg), and msg[n] would be out of range.
			for n > 0 && n < len(msg) && !utf8.RuneStart(msg[n]) {
				n--
			}
			o.SetString("msg", msg[:n]+CutMarker)
			if enc := o.Encode(); len(enc) <= LegacyMaxFrame {
				return enc
			}
			n -= max(1, (len(o.Encode())-LegacyMaxFrame)/6)
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
	slim.SetString("msg", CutMarker)
	return slim.Encode()
}
