package loadgen

import (
	"bytes"
	"encoding/json"
	"testing"
)

// pushFrames are server frames as the gateway writes them, and variations
// scanPush must read as encoding/json does or leave to it.
var pushFrames = []string{
	`{"bench":{"n":7,"run":"0a1b2c3d","t":1763719200123456789},"groupid":12,"id":3,"mid":"0193a3f0-7c1e-7a41-9b2e-4f6a8d2c1e00","msg":"xxxx","msgid":10,"name":"b0a1b2c3d-g0-0","seq":41,"time":"2026-11-21 10:00:00"}`,
	`{"bench":{"n":1,"run":"r","t":5},"id":1,"mid":"m","msg":"hi bob","msgid":6,"name":"alice","seq":1,"time":"2026-11-21 10:00:00","toid":2}`,
	`{"errmsg":"","errno":0,"mid":"0193","msgid":14,"re":10,"reqid":17}`,
	`{"errmsg":"","errno":0,"groupid":4,"msgid":14,"re":8,"reqid":2}`,
	`{"errmsg":"too many frames","errno":109,"msgid":14,"re":10}`,
	`{"msgid":15,"errno":108,"errmsg":"kicked"}`,
	` { "msgid" : 10 , "seq" : 2 , "x" : [1, {"a": "}]"}, -2.5e3, true, false, null] , "id": -4 } `,
	`{"msgid":10,"msg":"quote \" and brace } in text","seq":3,"nested":{"deep":{"deeper":[[]]}}}`,
	`{"msgid":10,"mid":"esc\u0061ped","seq":3}`,
	`{"msgid":10,"seq":3.0}`,
	`{"msgid":10,"seq":9223372036854775807}`,
	`{"msgid":10,"seq":9223372036854775808}`,
	`{"msgid":10,"bench":{"run":"r","n":2,"t":3,"extra":"x"},"bench2":{}}`,
	`{"msgid":6,"bench":null}`,
	`{}`,
	`{"msgid":10,"seq":1`,
	`{"msgid":10,"seq":1}x`,
	`[1,2]`,
	`{"msgid":10,"seq":1,}`,
}

func TestScanPush(t *testing.T) {
	for _, in := range pushFrames {
		var got pushFrame
		ok := scanPush([]byte(in), &got)
		var f frame
		jerr := json.Unmarshal([]byte(in), &f)
		if !ok {
			continue // encoding/json reads it
		}
		if jerr != nil {
			// The scanner is lenient about syntax it skips; it must not
			// read a frame encoding/json rejects into a different push.
			t.Logf("scanPush read %s, which encoding/json rejects: %v", in, jerr)
			continue
		}
		var want pushFrame
		want.fromFrame(&f)
		if !samePush(got, want) {
			t.Errorf("scanPush(%s)\n got %+v\nwant %+v", in, got, want)
		}
	}
	// The frames the gateway writes all take the fast path.
	for _, in := range pushFrames[:2] {
		var p pushFrame
		if !scanPush([]byte(in), &p) || !isPush(p.MsgID) || !p.Bench {
			t.Errorf("scanPush(%s) = %+v: want a push with its bench field", in, p)
		}
	}
}

func samePush(a, b pushFrame) bool {
	return a.MsgID == b.MsgID && a.ID == b.ID && a.GroupID == b.GroupID && a.Seq == b.Seq &&
		bytes.Equal(a.Mid, b.Mid) && a.Bench == b.Bench && bytes.Equal(a.Run, b.Run) && a.N == b.N && a.T == b.T
}

// Every delivery goes through scanPush; with thousands of connections in one
// process it must not allocate.
func TestScanPushDoesNotAllocate(t *testing.T) {
	b := []byte(pushFrames[0])
	var p pushFrame
	if allocs := testing.AllocsPerRun(100, func() { scanPush(b, &p) }); allocs != 0 {
		t.Errorf("scanPush allocates %.0f times per frame", allocs)
	}
}

func FuzzScanPush(f *testing.F) {
	for _, in := range pushFrames {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		// encoding/json also matches keys that differ in case ("SEQ", or
		// "ſeq" with a long s); scanPush reads only the server's spelling.
		if bytes.ContainsFunc(in, func(r rune) bool { return 'A' <= r && r <= 'Z' || r == 'ſ' || r == 'K' }) {
			return
		}
		var got pushFrame
		if !scanPush(in, &got) {
			return
		}
		var fr frame
		if json.Unmarshal(in, &fr) != nil {
			return
		}
		var want pushFrame
		want.fromFrame(&fr)
		if !samePush(got, want) {
			t.Errorf("scanPush(%q)\n got %+v\nwant %+v", in, got, want)
		}
	})
}

func BenchmarkScanPush(b *testing.B) {
	in := []byte(pushFrames[0])
	var p pushFrame
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		scanPush(in, &p)
	}
}

func BenchmarkUnmarshalPush(b *testing.B) {
	in := []byte(pushFrames[0])
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		var f frame
		json.Unmarshal(in, &f)
	}
}
