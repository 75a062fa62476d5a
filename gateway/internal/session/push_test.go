package session

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/natter-chat/natter/shared/api"
)

func TestDecodePush(t *testing.T) {
	body := `{"msgid":6,"id":2,"from":"al\"ice","toid":3,"msg":"}{ \u00e9","time":"2026-11-21 12:00:00"}`
	for _, tc := range []struct {
		name, data string
		fast       bool // read by scanPush
	}{
		{"offline service shape", `{"seq":42,"mid":"0194a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","from":2,"body":` + body + `}`, true},
		{"big numbers", `{"seq":9007199254740993,"mid":"m","from":-1,"body":{}}`, true},
		{"other key order", `{"mid":"m","seq":1,"from":2,"body":` + body + `}`, false},
		{"spaces", `{"seq": 1, "mid": "m", "from": 2, "body": {"a":1}}`, false},
		{"escaped mid", `{"seq":1,"mid":"a\"b","from":2,"body":{"a":1}}`, false},
		{"body not an object", `{"seq":1,"mid":"m","from":2,"body":[1]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want api.InboxMessage
			if err := json.Unmarshal([]byte(tc.data), &want); err != nil {
				t.Fatal(err)
			}
			got, err := decodePush([]byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decodePush = %+v (body %s), want %+v (body %s)", got, got.Body, want, want.Body)
			}
			if _, fast := scanPush([]byte(tc.data)); fast != tc.fast {
				t.Errorf("scanPush ok = %v, want %v", fast, tc.fast)
			}
		})
	}
	for _, bad := range []string{``, `{`, `{"seq":x}`, `{"seq":1,"mid":"m","from":2,"body":}`, `null`} {
		if m, err := decodePush([]byte(bad)); err == nil && bad != `null` {
			t.Errorf("decodePush(%q) = %+v, want an error", bad, m)
		}
	}
}

func BenchmarkDecodePush(b *testing.B) {
	data := []byte(`{"seq":42,"mid":"0194a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","from":2,"body":{"msgid":6,"id":2,"from":"alice","toid":3,"msg":"hello there, how are you doing today?","time":"2026-11-21 12:00:00"}}`)
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodePush(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			var m api.InboxMessage
			if err := json.Unmarshal(data, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
