package codec

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/wire"
)

// The differential checks shared by the table tests and the fuzz tests:
// each compares a codec function with the reference on one input.

// probeKeys are looked up in every frame besides its own keys.
var probeKeys = []string{"msgid", "toid", "groupid", "msg", "cid", "time", "reqid", "seq", "id", "name", "mid", "", "absent"}

var testNow = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// checkScan holds Scan and the accessors against wire.Parse and
// wire.Object's readers. It returns the reference object (nil when the
// frame is refused).
func checkScan(t *testing.T, f *Frame, frame []byte) wire.Object {
	t.Helper()
	o, perr := wire.Parse(frame)
	serr := Scan(frame, f)
	if (perr == nil) != (serr == nil) {
		t.Fatalf("Scan(%q) = %v, wire.Parse: %v", frame, serr, perr)
	}
	if serr != nil {
		if !errors.Is(serr, ErrMalformed) {
			t.Fatalf("Scan(%q) = %v, want ErrMalformed", frame, serr)
		}
		return nil
	}
	if got, want := objectText(f.Object()), objectText(o); !maps.Equal(got, want) {
		t.Fatalf("Scan(%q).Object() = %q, wire.Parse: %q", frame, got, want)
	}
	keys := append(sortedKeys(o), probeKeys...)
	for _, k := range keys {
		if got, want := f.Has(k), o.Has(k); got != want {
			t.Fatalf("%q: Has(%q) = %v, reference %v", frame, k, got, want)
		}
		if got, want := f.Raw(k), []byte(o[k]); !bytes.Equal(got, want) || (got == nil) != (want == nil) {
			t.Fatalf("%q: Raw(%q) = %q, reference %q", frame, k, got, want)
		}
		gi, gerr := f.Int(k)
		wi, werr := o.Int(k)
		if gi != wi || !sameError(gerr, werr) {
			t.Fatalf("%q: Int(%q) = %d, %v; reference %d, %v", frame, k, gi, gerr, wi, werr)
		}
		gi, gok, gerr := f.OptInt(k)
		wi, wok, werr := o.OptInt(k)
		if gi != wi || gok != wok || !sameError(gerr, werr) {
			t.Fatalf("%q: OptInt(%q) = %d, %v, %v; reference %d, %v, %v", frame, k, gi, gok, gerr, wi, wok, werr)
		}
		gs, gerr := f.String(k)
		ws, werr := o.String(k)
		if gs != ws || !sameError(gerr, werr) {
			t.Fatalf("%q: String(%q) = %q, %v; reference %q, %v", frame, k, gs, gerr, ws, werr)
		}
		gs, gok, gerr = f.OptString(k)
		ws, wok, werr = o.OptString(k)
		if gs != ws || gok != wok || !sameError(gerr, werr) {
			t.Fatalf("%q: OptString(%q) = %q, %v, %v; reference %q, %v, %v", frame, k, gs, gok, gerr, ws, wok, werr)
		}
	}
	return o
}

// checkChat holds CheckChat and AppendChatBody against the session's
// chat checks and chatBody, for both chat msgids. It returns the bodies.
func checkChat(t *testing.T, f *Frame, frame []byte, uid int64, name string, now time.Time) [][]byte {
	t.Helper()
	var bodies [][]byte
	for _, msgid := range []wire.MsgID{wire.OneChat, wire.GroupChat} {
		o, err := wire.Parse(frame)
		if err != nil {
			t.Fatalf("wire.Parse(%q): %v", frame, err)
		}
		got, gerr := f.CheckChat(msgid)
		want, werr := refCheckChat(o, msgid)
		if got != want || !sameError(gerr, werr) {
			t.Fatalf("%q: CheckChat(%d) = %+v, %v; reference %+v, %v", frame, msgid, got, gerr, want, werr)
		}
		prefix := []byte("prefix")
		body := AppendChatBody(prefix, f, msgid, uid, name, now)
		wantBody := refChatBody(o, msgid, uid, name, now)
		if !bytes.HasPrefix(body, prefix) || !bytes.Equal(body[len(prefix):], wantBody) {
			t.Fatalf("%q: AppendChatBody(%d, %d, %q) =\n%q\nreference\n%q", frame, msgid, uid, name, body, wantBody)
		}
		bodies = append(bodies, body[len(prefix):])
	}
	return bodies
}

// checkPush holds AppendPush and AppendLegacyPush against emitLocked's
// frames. It reports whether the body took the copying path.
func checkPush(t *testing.T, body []byte, mid string, seq int64) {
	t.Helper()
	prefix := []byte("prefix")
	got, gid, gerr := AppendPush(prefix, body, mid, seq)
	want, wid, werr := refPush(body, mid, seq)
	if (gerr == nil) != (werr == nil) || gid != wid {
		t.Fatalf("AppendPush(%q, %q, %d): msgid %d, err %v; reference msgid %d, err %v", body, mid, seq, gid, gerr, wid, werr)
	}
	if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) || (gerr != nil && len(got) != len(prefix)) {
		t.Fatalf("AppendPush(%q, %q, %d) =\n%q\nreference\n%q", body, mid, seq, got, want)
	}
	if o, err := wire.Parse(body); err == nil && bytes.Equal(o.Encode(), body) && plainKeys(o) {
		// The shape the gateway stores must take the copying path.
		if _, _, ok := appendStored(nil, body, mid, seq, true); !ok {
			t.Fatalf("AppendPush(%q): a body in the stored shape took the generic path", body)
		}
	}
	got, gid, gerr = AppendLegacyPush(prefix, body)
	want, wid, werr = refLegacyPush(body)
	if (gerr == nil) != (werr == nil) || gid != wid {
		t.Fatalf("AppendLegacyPush(%q): msgid %d, err %v; reference msgid %d, err %v", body, gid, gerr, wid, werr)
	}
	if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) || (gerr != nil && len(got) != len(prefix)) {
		t.Fatalf("AppendLegacyPush(%q) =\n%q\nreference\n%q", body, got, want)
	}
	if gerr != nil {
		return
	}
	frame := got[len(prefix):]
	rec, ok := AppendRecord(prefix, frame)
	if wantOK := len(frame) <= refLegacyMaxFrame; ok != wantOK {
		t.Fatalf("AppendRecord of %d bytes: ok %v", len(frame), ok)
	}
	if ok && !bytes.Equal(rec[len(prefix):], refAppendRecord(nil, frame)) {
		t.Fatalf("AppendRecord(%q) = %q", frame, rec)
	}
}

// checkReply holds AppendReply and AppendPong against sendOK, sendError
// and the PING handler.
func checkReply(t *testing.T, r *Reply) {
	t.Helper()
	prefix := []byte("prefix")
	got := AppendReply(prefix, r)
	want := refReply(r)
	if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
		t.Fatalf("AppendReply(%+v) =\n%q\nreference\n%q", *r, got[len(prefix):], want)
	}
	got = AppendPong(prefix, r.ReqID)
	if want := refPong(r.ReqID); !bytes.Equal(got[len(prefix):], want) {
		t.Fatalf("AppendPong(%q) = %q, reference %q", r.ReqID, got[len(prefix):], want)
	}
}

// refusedOf is a list of refused members drawn from seq: none, one or
// several, some of them large.
func refusedOf(seq int64) []int64 {
	switch seq % 7 {
	case 1:
		return []int64{seq}
	case 2:
		return []int64{1, seq, 1 << 62}
	}
	return nil
}

// checkAll runs every check that applies to frame.
func checkAll(t *testing.T, f *Frame, frame []byte, uid int64, name, mid string, seq int64) {
	t.Helper()
	o := checkScan(t, f, frame)
	checkPush(t, frame, mid, seq)
	if o == nil {
		return
	}
	for _, body := range checkChat(t, f, frame, uid, name, testNow) {
		checkPush(t, body, mid, seq)
	}
	for _, re := range []wire.MsgID{0, wire.Login, wire.Reg, wire.OneChat, wire.Reply, wire.Kicked} {
		for _, errno := range []wire.Errno{wire.OK, wire.BadField} {
			for _, legacy := range []bool{false, true} {
				checkReply(t, &Reply{Re: re, Errno: errno, Errmsg: name, ReqID: f.Raw("reqid"), Legacy: legacy,
					MID: mid, HasMID: seq%2 == 0, Duplicate: seq%3 == 0, Seq: seq, HasSeq: seq%5 == 0,
					Refused: refusedOf(seq)})
			}
		}
	}
}

// corpus is the table every check runs over (and the fuzzers' seeds):
// the client frames of the golden transcripts, then the edge cases.
func corpus(t testing.TB) []string {
	var frames []string
	paths, err := filepath.Glob("../../../tools/internal/e2e/testdata/*.txt")
	if err != nil || len(paths) == 0 {
		t.Fatalf("golden transcripts not found: %v", err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(data)) {
			// Client frames ("a> ...") and the server's ("a< ..."), the
			// latter being valid bodies, replies and pushes.
			who, frame, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
			if ok && (strings.HasSuffix(who, ">") || strings.HasSuffix(who, "<")) {
				frames = append(frames, frame)
			}
		}
	}
	return append(frames, edgeFrames...)
}

var edgeFrames = []string{
	// Shapes.
	`{}`, ` { } `, "\t{\r\n}\n", `{"a":1}`, `{"a" : 1 , "b" : [ 1 , { "c" : null } ] }`,
	`{"msgid":6,"toid":2,"msg":"hi"}`,
	`{"msgid":6,"toid":2,"msg":"hi","time":"2026-01-02 03:04:05","cid":"c-1","reqid":{"n": [1, 2]}}`,
	`{"msgid":10,"groupid":7,"msg":"hi all","extra":{"k" : [true, false, null]},"z":-0.5e-3}`,
	`{"toid":2,"msg":"x","password":"p","token":"t","dialect":"full","lastseq":3,"mid":"m","seq":9,"id":99,"name":"evil"}`,
	// Refused.
	``, ` `, `null`, `[]`, `"s"`, `1`, `true`, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{"a":1}}`,
	`{"a":1} x`, `{"a":1}{}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":1e}`, `{"a":+1}`,
	`{"a":tru}`, `{"a":nul}`, `{"a":truex}`, `{'a':1}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`,
	"{\"a\":\"tab\there\"}", "{\"a\":\"nl\nhere\"}", `{"a":[1,]}`, `{"a":[1 2]}`, `{"a":{"b"}}`,
	`{"a":{"b":1,}}`, `{"a":{1:2}}`, `{"a":[}`, `{"a":{]}`, `{"a" 1}`, `{"a":"unterminated}`, `{"a":1,"b"`,
	"{\"a\":1}\x00", "\xef\xbb\xbf{}", `{"a":\u0031}`,
	// Duplicate keys: the last wins, null included.
	`{"msgid":6,"msgid":10}`, `{"toid":2,"toid":null,"msg":"x"}`, `{"time":"t","time":null,"toid":1,"msg":"m"}`,
	`{"time":null,"time":"t2","toid":1,"msg":"m"}`, `{"a":1,"b":2,"a":3}`, `{"msg":"a","msg":"\xff"}`,
	// Keys written with escapes, or invalid UTF-8: compared unescaped.
	`{"msg\u0069d":6,"to\u0069d":3,"m\u0073g":"esc"}`, `{"msgid":6,"msg\u0069d":10}`,
	"{\"\xff\":1,\"\\ufffd\":2}", `{"\ud800":1,"\ufffd":2}`, `{"\"q\\":1,"a\/b":2}`, `{"\u2028":1,"x\u0000y":2}`,
	"{\"\xe2\x80\xa8\":1}", `{"é":1,"e\u0301":2,"ü":3}`, `{"":1,"":2}`,
	// Integers.
	`{"msgid":9223372036854775807}`, `{"msgid":9223372036854775808}`, `{"msgid":-9223372036854775808}`,
	`{"msgid":-9223372036854775809}`, `{"msgid":99999999999999999999}`, `{"msgid":00}`, `{"msgid":-0}`,
	`{"msgid":1.5}`, `{"msgid":1e2}`, `{"msgid":1E+2}`, `{"msgid":"7"}`, `{"msgid":true}`, `{"msgid":[6]}`,
	`{"msgid":{"v":6}}`, `{"toid":0,"msg":"m"}`, `{"toid":-3,"msg":"m"}`, `{"toid":12345678901234567890123,"msg":"m"}`,
	// Strings: escapes, unicode, invalid UTF-8.
	`{"toid":1,"msg":"\"\\\/\b\f\n\r\t\u0000\u001f\u007f<>&"}`, `{"toid":1,"msg":"你好 😀 \ud83d\ude00"}`,
	`{"toid":1,"msg":"\ud83d"}`, `{"toid":1,"msg":"\ude00\ud83d"}`, `{"toid":1,"msg":"\ud83d\u0041"}`,
	`{"toid":1,"msg":"\ud83d\\u0041"}`, "{\"toid\":1,\"msg\":\"bad \xff\xfe utf8\"}", "{\"toid\":1,\"msg\":\"\xed\xa0\x80\"}",
	"{\"toid\":1,\"msg\":\"cut \xe4\xbd\"}", "{\"toid\":1,\"msg\":\"ok\",\"x\":\"\xff\"}", "{\"toid\":1,\"msg\":\"\xe2\x80\xa8\xe2\x80\xa9\"}",
	`{"toid":1,"msg":"x","cid":"\u00e9"}`, `{"toid":1,"msg":"x","cid":"` + strings.Repeat("c", 64) + `"}`,
	`{"toid":1,"msg":"x","cid":"` + strings.Repeat("c", 65) + `"}`, `{"toid":1,"msg":"x","cid":"` + strings.Repeat("é", 33) + `"}`,
	`{"toid":1,"msg":"x","cid":null}`, `{"toid":1,"msg":"x","cid":5}`, `{"toid":1,"msg":"x","time":5}`,
	`{"toid":1,"msg":null}`, `{"toid":1}`, `{"toid":1,"msg":5}`, `{"msg":"x"}`, `{"toid":"1","msg":"x"}`,
	`{"groupid":4,"msg":"x","toid":"bad"}`, `{"toid":4,"msg":"x","groupid":0}`,
	// Whitespace of every kind between nested tokens; none removed inside strings.
	"{\"toid\":1,\"msg\":\"m\",\"x\":[1,\t2,\r\n3],\"y\":{\"k\":\" sp \\\" ace \"\t},\"z\":[\n]}",
	// Long texts: the legacy dialect cuts them.
	`{"toid":1,"msg":"` + strings.Repeat("long ", 300) + `"}`,
	`{"toid":1,"msg":"` + strings.Repeat("长", 400) + `"}`,
	`{"toid":1,"msg":"` + strings.Repeat(`\u0001`, 200) + `"}`,
	`{"toid":1,"msg":"short","big":"` + strings.Repeat("x", 1100) + `"}`,
	`{"toid":1,"msg":"` + strings.Repeat("m", 900) + `","big":"` + strings.Repeat("x", 1100) + `"}`,
	`{"msgid":6,"toid":1,"name":"` + strings.Repeat("n", 1100) + `","msg":"x"}`,
	`{"msgid":"` + strings.Repeat("9", 1100) + `","msg":"x"}`,
	// Stored bodies in the gateway's shape, with fields that sort around mid and seq.
	`{"id":1,"msg":"hi","msgid":6,"name":"ann","time":"2026-11-21 10:00:00","toid":2}`,
	`{"a":1}`, `{"mid":"old","seq":3}`, `{"mid":"old"}`, `{"seq":3}`, `{"m":1,"mia":2,"mie":3,"sep":4,"seq":5,"sez":6}`,
	`{"z":1}`, `{"mid":1,"mid":2}`, `{"b":1,"a":2}`, `{"id":1,"msg":"hi" }`, `{"x":[1, 2]}`, `{"x":{"y" :1}}`,
	`{"a\u0062":1}`, `{"é":1}`, "{\"\x7f\":1}", `{"msgid":6.0,"x":1}`, `{"id":{},"msg":[]}`,
}

// nested returns a frame whose "v" nests depth containers below the top
// object, alternating arrays and objects.
func nested(depth int) string {
	var b strings.Builder
	b.WriteString(`{"v":`)
	for i := range depth {
		if i%2 == 0 {
			b.WriteString("[")
		} else {
			b.WriteString(`{"k":`)
		}
	}
	b.WriteString("1")
	for i := depth - 1; i >= 0; i-- {
		if i%2 == 0 {
			b.WriteString("]")
		} else {
			b.WriteString("}")
		}
	}
	b.WriteString("}")
	return b.String()
}

// plainKeys reports whether every key of o is printable ASCII needing no
// escape.
func plainKeys(o wire.Object) bool {
	for k := range o {
		for i := 0; i < len(k); i++ {
			if !plain[k[i]] {
				return false
			}
		}
	}
	return true
}
