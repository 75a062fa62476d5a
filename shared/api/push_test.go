package api

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDecodePush(t *testing.T) {
	body := `{"msgid":6,"id":2,"from":"al\"ice","toid":3,"msg":"}{ \u00e9","time":"2026-11-21 12:00:00"}`
	for _, tc := range []struct {
		name, data string
		fast       bool // read by scanPush
	}{
		{"AppendPush shape", `{"seq":42,"mid":"0194a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","from":2,"body":` + body + `}`, true},
		{"big numbers", `{"seq":9007199254740993,"mid":"m","from":-1,"body":{}}`, true},
		{"other key order", `{"mid":"m","seq":1,"from":2,"body":` + body + `}`, false},
		{"spaces", `{"seq": 1, "mid": "m", "from": 2, "body": {"a":1}}`, false},
		{"escaped mid", `{"seq":1,"mid":"a\"b","from":2,"body":{"a":1}}`, false},
		{"body not an object", `{"seq":1,"mid":"m","from":2,"body":[1]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want InboxMessage
			if err := json.Unmarshal([]byte(tc.data), &want); err != nil {
				t.Fatal(err)
			}
			got, err := DecodePush([]byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("DecodePush = %+v (body %s), want %+v (body %s)", got, got.Body, want, want.Body)
			}
			if _, fast := scanPush([]byte(tc.data)); fast != tc.fast {
				t.Errorf("scanPush ok = %v, want %v", fast, tc.fast)
			}
		})
	}
	for _, bad := range []string{``, `{`, `{"seq":x}`, `{"seq":1,"mid":"m","from":2,"body":}`} {
		if m, err := DecodePush([]byte(bad)); err == nil {
			t.Errorf("DecodePush(%q) = %+v, want an error", bad, m)
		}
	}
}

func TestPushRoundTrip(t *testing.T) {
	body := []byte(`{"id":1,"msg":"héllo \"x\" <b>","msgid":6,"name":"alice","time":"2026-11-21 12:00:00","toid":2}`)
	data := AppendPush(nil, 7, "0194a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", 1, body)
	var std InboxMessage
	if err := json.Unmarshal(data, &std); err != nil {
		t.Fatalf("AppendPush wrote invalid JSON %s: %v", data, err)
	}
	got, err := DecodePush(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 7 || got.From != 1 || got.MID != std.MID || string(got.Body) != string(body) {
		t.Fatalf("round trip = %+v (body %s)", got, got.Body)
	}
	if _, fast := scanPush(data); !fast {
		t.Fatal("AppendPush's output is not read by the fast path")
	}
}

func BenchmarkDecodePush(b *testing.B) {
	data := []byte(`{"seq":42,"mid":"0194a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","from":2,"body":{"msgid":6,"id":2,"from":"alice","toid":3,"msg":"hello there, how are you doing today?","time":"2026-11-21 12:00:00"}}`)
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodePush(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m InboxMessage
			if err := json.Unmarshal(data, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAppendPush(b *testing.B) {
	body := []byte(`{"id":2,"msg":"hello there, how are you doing today?","msgid":6,"name":"alice","time":"2026-11-21 12:00:00","toid":3}`)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendPush(buf[:0], 42, "0194a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", 2, body)
	}
}

func TestAppendPush(t *testing.T) {
	body := json.RawMessage(`{"t":"<x> & 漢 \" \\"}`)
	m := InboxMessage{Seq: 42, MID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", From: 7, Body: body}
	want, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if got := AppendPush(nil, m.Seq, m.MID, m.From, m.Body); string(got) != string(want) {
		t.Errorf("AppendPush\n got %s\nwant %s", got, want)
	}
}
