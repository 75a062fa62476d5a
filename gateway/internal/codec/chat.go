package codec

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/wire"
)

// Chat is what a valid chat frame asks for.
type Chat struct {
	To  int64  // the recipient: "toid" of a ONE_CHAT, "groupid" of a GROUP_CHAT
	CID string // the client's message id, "" when it sent none
}

// CheckChat checks a scanned ONE_CHAT (wire.OneChat) or GROUP_CHAT
// (wire.GroupChat) frame as the session always has, the first failure
// winning, in this order: the target ("toid" or "groupid") a positive
// integer, "msg" a string, "cid" absent or a string of at most
// api.MaxCIDLen bytes, "time" absent or a string, "msg" valid UTF-8 as sent
// (escapes count as the ASCII they are written in). Errors are
// *wire.FieldError, for errno wire.BadField.
func (f *Frame) CheckChat(msgid wire.MsgID) (Chat, error) {
	target := "toid"
	if msgid == wire.GroupChat {
		target = "groupid"
	} else if msgid != wire.OneChat {
		return Chat{}, fmt.Errorf("codec: msgid %d is not a chat", msgid)
	}
	var c Chat
	var err error
	if c.To, err = f.Int(target); err != nil {
		return Chat{}, err
	}
	if c.To <= 0 {
		return Chat{}, &wire.FieldError{Field: target, Reason: "must be a positive id"}
	}
	msg := f.find("msg")
	if _, err = f.stringAt(msg, "msg"); err != nil {
		return Chat{}, err
	}
	if m := f.find("cid"); f.present(m) {
		cid, err := f.stringAt(m, "cid")
		if err != nil {
			return Chat{}, err
		}
		if len(cid) > api.MaxCIDLen {
			return Chat{}, &wire.FieldError{Field: "cid", Reason: fmt.Sprintf("must be at most %d bytes", api.MaxCIDLen)}
		}
		c.CID = string(cid)
	}
	if m := f.find("time"); f.present(m) {
		if _, err = f.stringAt(m, "time"); err != nil {
			return Chat{}, err
		}
	}
	if !utf8.Valid(f.value(msg)) {
		return Chat{}, &wire.FieldError{Field: "msg", Reason: "must be valid UTF-8"}
	}
	return c, nil
}

// The keys of a chat frame that are not part of the message: they are
// left out of the stored body. mid and seq are the server's; msgid, id and
// name are set from the session.
func dropFromBody(key []byte) bool {
	switch string(key) {
	case "reqid", "cid", "mid", "seq", "dialect", "lastseq", "password", "token", "msgid", "id", "name":
		return true
	}
	return false
}

// Entries AppendChatBody adds, as negative indexes into f.order.
const (
	addID    = -1 - iota // "id": the sender
	addMsgID             // "msgid"
	addName              // "name": the sender's name
	addTime              // "time": now, the server's clock (a client's time is dropped)
)

// addedKeys are the keys of the added entries, by -1-index (a table, never
// written).
var addedKeys = [...][]byte{[]byte("id"), []byte("msgid"), []byte("name"), []byte("time")}

// entryKey is the key of an entry of f.order: a member's index, or one of
// the added entries.
func (f *Frame) entryKey(e int32) []byte {
	if e < 0 {
		return addedKeys[-1-e]
	}
	return f.key(&f.members[e])
}

func (f *Frame) entryCmp(a, b int32) int {
	if c := bytes.Compare(f.entryKey(a), f.entryKey(b)); c != 0 {
		return c
	}
	return cmp.Compare(a, b) // a key given twice: the later one sorts last and wins
}

// AppendChatBody appends to dst the body stored for the chat frame f
// (msgid wire.OneChat or wire.GroupChat) sent by user uid named name: the
// frame's fields without the control fields (reqid cid mid seq dialect
// lastseq password token), with "msgid", "id" and "name" set from the
// arguments and "time" set to now (time.DateTime, in now's location,
// the original client's display format) whatever the frame says: a sender
// cannot forge what the recipient's client shows as the time, or make its
// line look like two; every other field passes through, compacted.
// Keys come out sorted: the bytes are those the session's chatBody made
// with wire.Object. Check the frame with CheckChat first.
func AppendChatBody(dst []byte, f *Frame, msgid wire.MsgID, uid int64, name string, now time.Time) []byte {
	order := f.order[:0]
	order = append(order, addID, addMsgID, addName, addTime)
	for i := range f.members {
		k := f.key(&f.members[i])
		if dropFromBody(k) || string(k) == "time" {
			continue
		}
		order = append(order, int32(i))
	}
	if len(order) <= 12 {
		for i := 1; i < len(order); i++ {
			for j := i; j > 0 && f.entryCmp(order[j-1], order[j]) > 0; j-- {
				order[j-1], order[j] = order[j], order[j-1]
			}
		}
	} else {
		slices.SortFunc(order, f.entryCmp)
	}
	f.order = order

	dst = append(dst, '{')
	first := true
	for n, e := range order {
		key := f.entryKey(e)
		if n+1 < len(order) && bytes.Equal(key, f.entryKey(order[n+1])) {
			continue // given again later
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = wire.AppendString(dst, key)
		dst = append(dst, ':')
		switch e {
		case addID:
			dst = strconv.AppendInt(dst, uid, 10)
		case addMsgID:
			dst = strconv.AppendInt(dst, int64(msgid), 10)
		case addName:
			dst = wire.AppendString(dst, name)
		case addTime:
			dst = append(dst, '"')
			dst = appendDateTime(dst, now)
			dst = append(dst, '"')
		default:
			m := &f.members[e]
			if m.flags&valSpace != 0 {
				dst = wire.AppendCompact(dst, f.value(m))
			} else {
				dst = append(dst, f.value(m)...)
			}
		}
	}
	return append(dst, '}')
}

// appendDateTime appends t formatted as time.DateTime ("2006-01-02
// 15:04:05"), writing the digits itself for years 0-9999.
func appendDateTime(dst []byte, t time.Time) []byte {
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, time.DateTime)
	}
	hour, minute, sec := t.Clock()
	dst = append(dst,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+month/10), byte('0'+month%10), '-', byte('0'+day/10), byte('0'+day%10), ' ',
		byte('0'+hour/10), byte('0'+hour%10), ':', byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+sec/10), byte('0'+sec%10))
	return dst
}
