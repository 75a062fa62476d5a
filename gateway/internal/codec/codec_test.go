package codec

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/natter-chat/natter/shared/wire"
)

func TestMatchesReference(t *testing.T) {
	var f Frame // one Frame for everything: reuse must not leak state
	for _, frame := range corpus(t) {
		for _, c := range []struct {
			uid       int64
			name, mid string
			seq       int64
		}{
			{1, "ann", "01JD0000000000000000000000", 1},
			{9223372036854775807, "名字 <b>&\"q\"\\ \u2028\xff", "m\"id\u2029", 30},
			{-1, "", "", -9223372036854775808},
		} {
			checkAll(t, &f, []byte(frame), c.uid, c.name, c.mid, c.seq)
		}
	}
}

func TestNestingLimit(t *testing.T) {
	var f Frame
	// encoding/json refuses more than 10000 open containers, the top
	// object included.
	for _, tc := range []struct {
		depth int
		ok    bool
	}{{63, true}, {64, true}, {65, true}, {200, true}, {9999, true}, {10000, false}, {20000, false}} {
		frame := []byte(nested(tc.depth))
		if err := Scan(frame, &f); (err == nil) != tc.ok {
			t.Errorf("depth %d below the top: Scan = %v, want ok %v", tc.depth, err, tc.ok)
		}
		checkScan(t, &f, frame)
		checkPush(t, frame, "m", 1)
	}
	// Unclosed at the limit: refused for the syntax, not the depth.
	checkScan(t, &f, []byte(`{"v":`+strings.Repeat("[", 9999)))
}

func TestScanRefuses(t *testing.T) {
	var f Frame
	for _, frame := range []string{"", "null", "[]", `{"a":1} {}`, `{"a":1,}`, `{"a":"\q"}`, "{\"a\":\"\x01\"}"} {
		if err := Scan([]byte(frame), &f); !errors.Is(err, ErrMalformed) {
			t.Errorf("Scan(%q) = %v, want ErrMalformed", frame, err)
		}
		if f.Has("a") || f.Raw("a") != nil {
			t.Errorf("Scan(%q) failed but left keys behind", frame)
		}
	}
}

func TestAccessors(t *testing.T) {
	var f Frame
	frame := `{"n":42,"neg":-7,"big":9223372036854775808,"frac":1.5,"exp":1e2,"str":"7","nul":null,` +
		`"s":"a\"b\u00e9\ud83d\ude00","bad":"\ud800x","obj":{"a" : 1},"n":43}`
	if err := Scan([]byte(frame), &f); err != nil {
		t.Fatal(err)
	}
	ints := []struct {
		key  string
		n    int64
		err  string
		opt  bool
		oerr string
	}{
		{"n", 43, "", true, ""},
		{"neg", -7, "", true, ""},
		{"big", 0, `field "big" must be an integer`, false, `field "big" must be an integer`},
		{"frac", 0, `field "frac" must be an integer`, false, `field "frac" must be an integer`},
		{"exp", 0, `field "exp" must be an integer`, false, `field "exp" must be an integer`},
		{"str", 0, `field "str" must be an integer`, false, `field "str" must be an integer`},
		{"nul", 0, `field "nul" is missing`, false, ""},
		{"none", 0, `field "none" is missing`, false, ""},
	}
	for _, tc := range ints {
		n, err := f.Int(tc.key)
		if n != tc.n || errText(err) != tc.err {
			t.Errorf("Int(%q) = %d, %v; want %d, %q", tc.key, n, err, tc.n, tc.err)
		}
		_, ok, err := f.OptInt(tc.key)
		if ok != tc.opt || errText(err) != tc.oerr {
			t.Errorf("OptInt(%q) = %v, %v; want %v, %q", tc.key, ok, err, tc.opt, tc.oerr)
		}
	}
	strs := []struct{ key, s, err string }{
		{"s", "a\"bé😀", ""},
		{"bad", "\ufffdx", ""},
		{"n", "", `field "n" must be a string`},
		{"obj", "", `field "obj" must be a string`},
		{"nul", "", `field "nul" is missing`},
	}
	for _, tc := range strs {
		s, err := f.String(tc.key)
		if s != tc.s || errText(err) != tc.err {
			t.Errorf("String(%q) = %q, %v; want %q, %q", tc.key, s, err, tc.s, tc.err)
		}
	}
	if got := string(f.Raw("obj")); got != `{"a" : 1}` {
		t.Errorf(`Raw("obj") = %q`, got)
	}
	if f.Has("nul") || !f.Has("n") || f.Raw("none") != nil {
		t.Error("Has/Raw wrong for null or absent fields")
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestCheckChat(t *testing.T) {
	var f Frame
	long := strings.Repeat("c", 65)
	for _, tc := range []struct {
		msgid wire.MsgID
		frame string
		want  Chat
		err   string
	}{
		{wire.OneChat, `{"msgid":6,"toid":2,"msg":"hi"}`, Chat{To: 2}, ""},
		{wire.OneChat, `{"toid":2,"msg":"hi","cid":"k1","time":"t"}`, Chat{To: 2, CID: "k1"}, ""},
		{wire.GroupChat, `{"groupid":9,"msg":"hi","cid":null,"time":null}`, Chat{To: 9}, ""},
		{wire.OneChat, `{"msg":"hi"}`, Chat{}, `field "toid" is missing`},
		{wire.GroupChat, `{"toid":2,"msg":"hi"}`, Chat{}, `field "groupid" is missing`},
		{wire.OneChat, `{"toid":0,"msg":"hi"}`, Chat{}, `field "toid" must be a positive id`},
		{wire.OneChat, `{"toid":"2","msg":5}`, Chat{}, `field "toid" must be an integer`},
		{wire.OneChat, `{"toid":2,"msg":5,"cid":5}`, Chat{}, `field "msg" must be a string`},
		{wire.OneChat, `{"toid":2,"cid":5}`, Chat{}, `field "msg" is missing`},
		{wire.OneChat, `{"toid":2,"msg":"x","cid":5,"time":5}`, Chat{}, `field "cid" must be a string`},
		{wire.OneChat, `{"toid":2,"msg":"x","cid":"` + long + `","time":5}`, Chat{}, `field "cid" must be at most 64 bytes`},
		{wire.OneChat, "{\"toid\":2,\"msg\":\"\xff\",\"time\":5}", Chat{}, `field "time" must be a string`},
		{wire.OneChat, "{\"toid\":2,\"msg\":\"\xff\"}", Chat{}, `field "msg" must be valid UTF-8`},
		{wire.OneChat, `{"toid":2,"msg":"\udfff"}`, Chat{To: 2}, ""}, // valid as sent
	} {
		if err := Scan([]byte(tc.frame), &f); err != nil {
			t.Fatalf("Scan(%q): %v", tc.frame, err)
		}
		got, err := f.CheckChat(tc.msgid)
		if got != tc.want || errText(err) != tc.err {
			t.Errorf("CheckChat(%d) of %q = %+v, %v; want %+v, %q", tc.msgid, tc.frame, got, err, tc.want, tc.err)
		}
		var fe *wire.FieldError
		if err != nil && !errors.As(err, &fe) {
			t.Errorf("CheckChat error %T, want *wire.FieldError", err)
		}
	}
	if _, err := f.CheckChat(wire.Ack); err == nil {
		t.Error("CheckChat(wire.Ack) accepted a msgid that is not a chat")
	}
}

func TestChatBody(t *testing.T) {
	var f Frame
	for _, tc := range []struct {
		msgid      wire.MsgID
		frame, out string
	}{
		{wire.OneChat, `{"msgid":6,"toid":2,"msg":"hello <ben> & co","time":"2026-11-21 10:00:00","reqid":"c1","cid":"k1"}`,
			`{"id":1,"msg":"hello <ben> & co","msgid":6,"name":"ann","time":"2026-11-21 10:00:00","toid":2}`},
		{wire.OneChat, `{"toid":2,"msg":"no time","id":99,"name":"evil","mid":"x","seq":5,"token":"t"}`,
			`{"id":1,"msg":"no time","msgid":6,"name":"ann","time":"2026-11-21 10:00:00","toid":2}`},
		{wire.GroupChat, `{ "groupid" : 7 , "msg" : "x" , "extra" : { "a" : [ 1 , 2 ] } , "time" : null }`,
			`{"extra":{"a":[1,2]},"groupid":7,"id":1,"msg":"x","msgid":10,"name":"ann","time":"2026-11-21 10:00:00"}`},
		{wire.OneChat, `{"toid":2,"msg":"a","msg":"b","\u0061":1,"a":2}`,
			`{"a":2,"id":1,"msg":"b","msgid":6,"name":"ann","time":"2026-11-21 10:00:00","toid":2}`},
	} {
		if err := Scan([]byte(tc.frame), &f); err != nil {
			t.Fatal(err)
		}
		if got := AppendChatBody(nil, &f, tc.msgid, 1, "ann", testNow); string(got) != tc.out {
			t.Errorf("AppendChatBody(%q) =\n%s\nwant\n%s", tc.frame, got, tc.out)
		}
	}
}

func TestPush(t *testing.T) {
	body := `{"id":1,"msg":"hello <ben> & co","msgid":6,"name":"ann","time":"2026-11-21 10:00:00","toid":2}`
	want := `{"id":1,"mid":"<mid>","msg":"hello <ben> & co","msgid":6,"name":"ann","seq":1,"time":"2026-11-21 10:00:00","toid":2}`
	got, msgid, err := AppendPush(nil, []byte(body), "<mid>", 1)
	if err != nil || string(got) != want || msgid != wire.OneChat {
		t.Errorf("AppendPush = %s, %d, %v; want %s", got, msgid, err, want)
	}
	got, msgid, err = AppendLegacyPush(nil, []byte(body))
	if err != nil || string(got) != body || msgid != wire.OneChat {
		t.Errorf("AppendLegacyPush = %s, %d, %v; want %s", got, msgid, err, body)
	}
	for _, tc := range []struct{ body, want string }{
		{`{}`, `{"mid":"m","seq":7}`},
		{`{"a":1}`, `{"a":1,"mid":"m","seq":7}`},
		{`{"z":1}`, `{"mid":"m","seq":7,"z":1}`},
		{`{"mid":"old","seq":3}`, `{"mid":"m","seq":7}`},
		{`{"n":1}`, `{"mid":"m","n":1,"seq":7}`},
		{`{"b":1,"a":2}`, `{"a":2,"b":1,"mid":"m","seq":7}`},               // not sorted: re-encoded
		{`{ "a" : [ 1 , 2 ] }`, `{"a":[1,2],"mid":"m","seq":7}`},           // spaces: re-encoded
		{`{"a":1,"a":2}`, `{"a":2,"mid":"m","seq":7}`},                     // a key twice
		{`{"\u0061":1}`, `{"a":1,"mid":"m","seq":7}`},                      // escaped key
		{`{"é":1,"z":"\u00e9"}`, `{"mid":"m","seq":7,"z":"\u00e9","é":1}`}, // non-ASCII key
	} {
		got, _, err := AppendPush(nil, []byte(tc.body), "m", 7)
		if err != nil || string(got) != tc.want {
			t.Errorf("AppendPush(%s) = %s, %v; want %s", tc.body, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "null", "[1]", `{"a":}`, `{"a":1}x`} {
		dst := []byte("keep")
		got, _, err := AppendPush(dst, []byte(bad), "m", 1)
		if err == nil || string(got) != "keep" {
			t.Errorf("AppendPush(%q) = %q, %v; want an error and dst unchanged", bad, got, err)
		}
		got, _, err = AppendLegacyPush(dst, []byte(bad))
		if err == nil || string(got) != "keep" {
			t.Errorf("AppendLegacyPush(%q) = %q, %v; want an error and dst unchanged", bad, got, err)
		}
	}
}

func TestLegacyPushCutsLongChats(t *testing.T) {
	var f Frame
	for _, text := range []string{strings.Repeat("long ", 300), strings.Repeat("长", 500), strings.Repeat("\x01", 300)} {
		frame := []byte(`{"toid":2,"msg":` + string(wire.AppendString(nil, text)) + `}`)
		if err := Scan(frame, &f); err != nil {
			t.Fatal(err)
		}
		body := AppendChatBody(nil, &f, wire.OneChat, 1, "ann", testNow)
		got, _, err := AppendLegacyPush(nil, body)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > LegacyMaxFrame || !utf8.Valid(got) {
			t.Fatalf("legacy frame of %d bytes (max %d), valid UTF-8 %v", len(got), LegacyMaxFrame, utf8.Valid(got))
		}
		o, err := wire.Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := o.String("msg")
		if !strings.HasSuffix(msg, CutMarker) || !strings.HasPrefix(text, strings.TrimSuffix(msg, CutMarker)) {
			t.Errorf("cut text %q is not a prefix of the text and the marker", msg)
		}
		checkPush(t, body, "m", 1)
	}
}

func TestAppendRecord(t *testing.T) {
	for _, n := range []int{0, 1, 100, LegacyMaxFrame} {
		frame := bytes.Repeat([]byte{'x'}, n)
		got, ok := AppendRecord([]byte{}, frame)
		if !ok || len(got) != LegacyRecord || !bytes.Equal(got, refAppendRecord(nil, frame)) {
			t.Errorf("AppendRecord(%d bytes) = %d bytes, ok %v", n, len(got), ok)
		}
		two, _ := AppendRecord(got, frame)
		if len(two) != 2*LegacyRecord || !bytes.Equal(two[LegacyRecord:], got) {
			t.Errorf("a second record of %d bytes is not one more record", n)
		}
	}
	if got, ok := AppendRecord([]byte("a"), make([]byte, LegacyRecord)); ok || string(got) != "a" {
		t.Errorf("AppendRecord accepted a frame of %d bytes", LegacyRecord)
	}
}

func TestReply(t *testing.T) {
	for _, tc := range []struct {
		r    Reply
		want string
	}{
		{Reply{Re: wire.OneChat, ReqID: []byte(`"c1"`), MID: "<mid>", HasMID: true},
			`{"errmsg":"","errno":0,"mid":"<mid>","msgid":14,"re":6,"reqid":"c1"}`},
		{Reply{Re: wire.OneChat, ReqID: []byte(`"c1-retry"`), MID: "<mid>", HasMID: true, Duplicate: true},
			`{"duplicate":true,"errmsg":"","errno":0,"mid":"<mid>","msgid":14,"re":6,"reqid":"c1-retry"}`},
		{Reply{Re: wire.GroupChat, ReqID: []byte(`"g1"`), MID: "<mid>", HasMID: true, Refused: []int64{4, 17}},
			`{"errmsg":"","errno":0,"mid":"<mid>","msgid":14,"re":10,"refused":[4,17],"reqid":"g1"}`},
		{Reply{Re: wire.GroupChat, Legacy: true, MID: "m", HasMID: true, Refused: []int64{4}}, ``},
		{Reply{Re: wire.Ack, ReqID: []byte(`"k"`), Seq: 1, HasSeq: true},
			`{"errmsg":"","errno":0,"msgid":14,"re":13,"reqid":"k","seq":1}`},
		{Reply{Re: wire.AddFriend}, `{"errmsg":"","errno":0,"msgid":14,"re":7}`},
		{Reply{Re: wire.OneChat, Errno: wire.NotLoggedIn, Errmsg: "log in first"},
			`{"errmsg":"log in first","errno":103,"msgid":14,"re":6}`},
		{Reply{Errno: wire.BadJSON, Errmsg: MsgMalformed},
			`{"errmsg":"malformed frame: want one JSON object","errno":100,"msgid":14}`},
		{Reply{Re: wire.Login, Errno: wire.LoginInvalid, Errmsg: wire.MsgLoginInvalid, ReqID: []byte(`{"a" : [1, 2]}`)},
			`{"errmsg":"id or password is invalid!","errno":1,"msgid":2,"reqid":{"a":[1,2]}}`},
		{Reply{Re: wire.Reg, Errno: wire.RegFailed, Errmsg: "name is already taken", ReqID: []byte("7"), Legacy: true},
			`{"errmsg":"name is already taken","errno":1,"msgid":5}`},
		{Reply{Re: wire.Kicked, Errno: wire.SessionReplaced, Errmsg: "logged in elsewhere; this session is closed"},
			`{"errmsg":"logged in elsewhere; this session is closed","errno":108,"msgid":15}`},
		{Reply{Re: wire.Reply, Errno: wire.FrameTooLarge, Errmsg: "frame too large; closing"},
			`{"errmsg":"frame too large; closing","errno":104,"msgid":14}`},
		{Reply{Re: wire.OneChat, Legacy: true, MID: "m", HasMID: true}, ``},
	} {
		if got := AppendReply(nil, &tc.r); string(got) != tc.want {
			t.Errorf("AppendReply(%+v) =\n%s\nwant\n%s", tc.r, got, tc.want)
		}
		checkReply(t, &tc.r)
	}
	if got := AppendPong(nil, nil); string(got) != `{"msgid":12}` {
		t.Errorf("AppendPong(nil) = %s", got)
	}
	if got := AppendPong(nil, []byte("7")); string(got) != `{"msgid":12,"reqid":7}` {
		t.Errorf("AppendPong(7) = %s", got)
	}
}

// TestFrameGivesBackLargeBuffers: one huge frame does not pin its buffers
// for the life of the connection.
func TestFrameGivesBackLargeBuffers(t *testing.T) {
	var f Frame
	var b strings.Builder
	b.WriteString("{")
	for i := range 2000 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k\u00e9` + strings.Repeat("x", i%50) + `":1`)
	}
	b.WriteString("}")
	if err := Scan([]byte(b.String()), &f); err != nil {
		t.Fatal(err)
	}
	AppendChatBody(nil, &f, wire.OneChat, 1, "a", testNow)
	if cap(f.members) <= keepMembers || cap(f.scratch) <= keepScratch {
		t.Fatalf("the large frame did not grow the buffers (members %d, scratch %d)", cap(f.members), cap(f.scratch))
	}
	if err := Scan([]byte(`{"msgid":11}`), &f); err != nil {
		t.Fatal(err)
	}
	if cap(f.members) > keepMembers || cap(f.scratch) > keepScratch || cap(f.order) > keepMembers {
		t.Errorf("buffers kept after a small frame: members %d, scratch %d, order %d", cap(f.members), cap(f.scratch), cap(f.order))
	}
}

// TestSteadyStateAllocations: the hot paths allocate nothing once a Frame
// and the output buffer have grown.
func TestSteadyStateAllocations(t *testing.T) {
	chat := []byte(`{"msgid":6,"toid":2,"msg":"hello \u00e9 \"there\"","reqid":"r-17","time":"2026-11-21 10:00:00"}`)
	body := []byte(`{"id":1,"msg":"hello","msgid":6,"name":"ann","time":"2026-11-21 10:00:00","toid":2}`)
	var f Frame
	buf := make([]byte, 0, 4096)
	now := time.Now()
	for _, tc := range []struct {
		name string
		run  func()
	}{
		{"scan and read", func() {
			if Scan(chat, &f) != nil {
				t.Fatal("scan")
			}
			_, _ = f.Int("msgid")
			_, _ = f.StringBytes("msg")
			_ = f.Raw("reqid")
		}},
		{"check chat and body", func() {
			_ = Scan(chat, &f)
			if _, err := f.CheckChat(wire.OneChat); err != nil {
				t.Fatal(err)
			}
			buf = AppendChatBody(buf[:0], &f, wire.OneChat, 1, "ann", now)
		}},
		{"push", func() { buf, _, _ = AppendPush(buf[:0], body, "01JD0000000000000000000000", 42) }},
		{"legacy push", func() { buf, _, _ = AppendLegacyPush(buf[:0], body) }},
		{"reply", func() {
			_ = Scan(chat, &f)
			buf = AppendReply(buf[:0], &Reply{Re: wire.OneChat, ReqID: f.Raw("reqid"), MID: "m", HasMID: true})
		}},
		{"pong", func() { buf = AppendPong(buf[:0], []byte(`"r-17"`)) }},
		{"record", func() { buf, _ = AppendRecord(buf[:0], body) }},
	} {
		tc.run()
		if n := testing.AllocsPerRun(100, tc.run); n != 0 {
			t.Errorf("%s: %.1f allocations per run, want 0", tc.name, n)
		}
	}
}

func TestAppendDateTime(t *testing.T) {
	zones := []*time.Location{time.UTC, time.FixedZone("east", 8*3600), time.FixedZone("west", -(9*3600 + 30*60))}
	for _, tt := range []time.Time{
		time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1, 2, 3, 4, 5, 6, 7, time.UTC),
		time.Date(999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 6, 15, 12, 30, 45, 0, time.UTC),
		time.Now(),
		{},
	} {
		for _, z := range zones {
			tz := tt.In(z)
			if got, want := string(appendDateTime(nil, tz)), tz.Format(time.DateTime); got != want {
				t.Errorf("appendDateTime(%v) = %q, want %q", tz, got, want)
			}
		}
	}
}

// scanStringBytes is scanString a byte at a time: the word-at-a-time scan
// must agree with it everywhere.
func scanStringBytes(src []byte, i int) (end int, fl uint8, ok bool) {
	for i++; i < len(src); {
		switch c := src[i]; {
		case c == '"':
			return i + 1, fl, true
		case c == '\\':
			fl |= strEsc
			if i+1 == len(src) {
				return 0, 0, false
			}
			switch src[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(src) || hex4(src[i+2:i+6]) < 0 {
					return 0, 0, false
				}
				i += 6
			default:
				return 0, 0, false
			}
		case c < 0x20:
			return 0, 0, false
		case c >= 0x80:
			fl |= strHigh
			i++
		default:
			i++
		}
	}
	return 0, 0, false
}

func TestScanStringWords(t *testing.T) {
	pieces := []string{"a", "bcdefgh", " ", "\x7f", "\x1f", "\x00", "é", "\xff", "\xe2\x80\xa8", `\"`, `\\`, `\n`, `\u00e9`, `\u12`, `\x`, `"`, `!`, "#", "[", "]", "\\"}
	rng := uint64(1)
	next := func(n int) int { // xorshift: the same cases every run
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		return int(rng % uint64(n))
	}
	for range 200000 {
		b := []byte{'"'}
		for n := next(12); n > 0; n-- {
			b = append(b, pieces[next(len(pieces))]...)
		}
		if next(4) > 0 {
			b = append(b, '"')
		}
		if next(2) == 0 {
			b = append(b, ",\"tail\":1}"[:next(10)]...)
		}
		ge, gf, gok := scanString(b, 0)
		we, wf, wok := scanStringBytes(b, 0)
		if ge != we || gf != wf || gok != wok {
			t.Fatalf("scanString(%q) = %d, %b, %v; a byte at a time %d, %b, %v", b, ge, gf, gok, we, wf, wok)
		}
	}
}
