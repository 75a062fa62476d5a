package codec

import (
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/wire"
)

// The fuzzers hold every function against the reference on generated
// inputs: go test -run '^$' -fuzz '^FuzzScan$' ./internal/codec (and
// FuzzChatBody, FuzzPush, FuzzReply). The seeds are the table tests'
// corpus.

func FuzzScan(f *testing.F) {
	for _, frame := range corpus(f) {
		f.Add([]byte(frame))
	}
	var fr Frame // reused across inputs, as a connection reuses it
	f.Fuzz(func(t *testing.T, frame []byte) {
		checkScan(t, &fr, frame)
	})
}

func FuzzChatBody(f *testing.F) {
	for i, frame := range corpus(f) {
		f.Add([]byte(frame), int64(i), "ann", int64(1795000000+i))
	}
	f.Add([]byte(`{"toid":2,"msg":"x"}`), int64(-1), "\xff\u2028<&>\"\\\x00", int64(-62135596800))
	var fr Frame
	f.Fuzz(func(t *testing.T, frame []byte, uid int64, name string, unix int64) {
		if Scan(frame, &fr) != nil {
			return
		}
		now := time.Unix(unix, 0).UTC()
		for _, body := range checkChat(t, &fr, frame, uid, name, now) {
			checkPush(t, body, name, uid)
		}
	})
}

func FuzzPush(f *testing.F) {
	for i, frame := range corpus(f) {
		f.Add([]byte(frame), "01JD0000000000000000000000", int64(i))
	}
	f.Add([]byte(`{"a":1}`), "\xff\u2029\"", int64(-9223372036854775808))
	f.Fuzz(func(t *testing.T, body []byte, mid string, seq int64) {
		checkPush(t, body, mid, seq)
	})
}

func FuzzReply(f *testing.F) {
	f.Add(int(wire.OneChat), int(wire.OK), "", []byte(`"c1"`), false, "01JD", true, false, int64(0), false)
	f.Add(int(wire.Ack), int(wire.OK), "", []byte(`{ "a" : [1, 2] }`), false, "", false, false, int64(7), true)
	f.Add(int(wire.Login), int(wire.LoginInvalid), wire.MsgLoginInvalid, []byte(`7`), false, "", false, false, int64(0), false)
	f.Add(int(wire.Reg), int(wire.RegFailed), "name is already taken", []byte(`null`), true, "", false, false, int64(0), false)
	f.Add(int(wire.Kicked), int(wire.SessionReplaced), "logged in elsewhere", []byte(nil), false, "", false, false, int64(0), false)
	f.Add(0, int(wire.BadJSON), MsgMalformed, []byte(nil), false, "", false, false, int64(0), false)
	f.Add(int(wire.Reply), int(wire.Flood), "<&>\u2028\xff\"\\\n\x01", []byte(`"\u00e9"`), false, "m\xff", true, true, int64(-1), true)
	var fr Frame
	f.Fuzz(func(t *testing.T, re, errno int, errmsg string, reqid []byte, legacy bool, mid string, hasMID, dup bool, seq int64, hasSeq bool) {
		// A reqid is always a JSON value from a scanned frame.
		frame := append(append([]byte(`{"reqid":`), reqid...), '}')
		if Scan(frame, &fr) != nil {
			return
		}
		checkReply(t, &Reply{Re: wire.MsgID(re), Errno: wire.Errno(errno), Errmsg: errmsg, ReqID: fr.Raw("reqid"),
			Legacy: legacy, MID: mid, HasMID: hasMID, Duplicate: dup, Seq: seq, HasSeq: hasSeq})
	})
}
