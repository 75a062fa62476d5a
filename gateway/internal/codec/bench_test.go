package codec

import (
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/wire"
)

// Each benchmark runs the codec and the reference (the generic path the
// session used) on the same frame:
//
//	go test -run '^$' -bench . -benchmem ./internal/codec

var (
	benchChat  = []byte(`{"msgid":6,"toid":2,"msg":"hello there, how are you today?","reqid":"r-17","cid":"c-17"}`)
	benchBody  = []byte(`{"id":1,"msg":"hello there, how are you today?","msgid":6,"name":"ann","time":"2026-11-21 10:00:00","toid":2}`)
	benchMID   = "01JD7Q3ZP3K8V9X2M4N6R8T0WY"
	benchReqID = []byte(`"r-17"`)
)

// BenchmarkScan: a chat frame scanned, its msgid and reqid read.
func BenchmarkScan(b *testing.B) {
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		var f Frame
		for b.Loop() {
			if Scan(benchChat, &f) != nil {
				b.Fatal("scan")
			}
			if _, err := f.Int("msgid"); err != nil {
				b.Fatal(err)
			}
			_ = f.Raw("reqid")
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			o, err := wire.Parse(benchChat)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := o.Int("msgid"); err != nil {
				b.Fatal(err)
			}
			_ = []byte(o["reqid"])
		}
	})
}

// BenchmarkChatBody: a chat frame in: scanned, checked, its stored body
// built.
func BenchmarkChatBody(b *testing.B) {
	now := time.Now()
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		var f Frame
		var buf []byte
		for b.Loop() {
			if Scan(benchChat, &f) != nil {
				b.Fatal("scan")
			}
			if _, err := f.CheckChat(wire.OneChat); err != nil {
				b.Fatal(err)
			}
			buf = AppendChatBody(buf[:0], &f, wire.OneChat, 1, "ann", now)
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			o, err := wire.Parse(benchChat)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := refCheckChat(o, wire.OneChat); err != nil {
				b.Fatal(err)
			}
			_ = refChatBody(o, wire.OneChat, 1, "ann", now)
		}
	})
}

// BenchmarkPush: a stored message out to a full-dialect client.
func BenchmarkPush(b *testing.B) {
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _, _ = AppendPush(buf[:0], benchBody, benchMID, 42)
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := refPush(benchBody, benchMID, 42); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLegacyPush: a stored message out to the original client.
func BenchmarkLegacyPush(b *testing.B) {
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _, _ = AppendLegacyPush(buf[:0], benchBody)
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := refLegacyPush(benchBody); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReply: the sender's answer to a stored chat.
func BenchmarkReply(b *testing.B) {
	r := &Reply{Re: wire.OneChat, ReqID: benchReqID, MID: benchMID, HasMID: true}
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = AppendReply(buf[:0], r)
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = refReply(r)
		}
	})
}

// BenchmarkPong: the answer to a PING with a reqid.
func BenchmarkPong(b *testing.B) {
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = AppendPong(buf[:0], benchReqID)
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = refPong(benchReqID)
		}
	})
}
