package offline

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/subject"
)

// storeRequests are store requests as the gateway and the group service
// send them: a one-to-one chat and a group chat to 49 members.
func storeRequests(b *testing.B) map[string][]byte {
	body := []byte(`{"msgid":5,"id":1000,"name":"b1-s0","toid":2000,"msg":"` + string(slices.Repeat([]byte("x"), 32)) + `"}`)
	group := make([]int64, 49)
	for i := range group {
		group[i] = int64(2000 + i)
	}
	out := map[string][]byte{}
	for name, req := range map[string]api.StoreRequest{
		"one":     {From: 1000, To: []int64{2000}, CID: "c12345", Body: body},
		"group50": {From: 1000, To: group, CID: "c12345", Body: body},
	} {
		data, err := api.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		out[name] = data
	}
	return out
}

// BenchmarkDecodeStore is the store endpoint's decoding and checking of
// one request (the first stage of a store).
func BenchmarkDecodeStore(b *testing.B) {
	for _, name := range []string{"one", "group50"} {
		data := storeRequests(b)[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := decodeStore(data, DefaultMaxRecipients); err != nil {
					b.Fatal(fmt.Errorf("%s: %w", data, err))
				}
			}
		})
	}
}

// BenchmarkPublishPush is the last stage of a store: a committed entry
// published to its recipient's subject (api.AppendPush and a PublishMsg
// with the kind header) on a connection to an in-process NATS server,
// with a subscriber on the subject.
func BenchmarkPublishPush(b *testing.B) {
	ns := natstest.Run(b)
	nc := natstest.Connect(b, ns)
	sub := natstest.Connect(b, ns)
	got := make(chan struct{}, 1)
	var n atomic.Int64
	want := int64(0)
	if _, err := sub.Subscribe(subject.User(2000), func(*nats.Msg) {
		if n.Add(1) == want {
			got <- struct{}{}
		}
	}); err != nil {
		b.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"msgid":5,"id":1000,"name":"b1-s0","toid":2000,"msg":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	p := publisher{hdr: nats.Header{subject.KindHeader: []string{subject.KindMsg}}}
	b.ReportAllocs()
	want = int64(b.N)
	for i := range b.N {
		p.push = api.AppendPush(p.push[:0], int64(i+1), "0190f2a4-0000-7000-8000-000000000000", 1000, body)
		if err := nc.PublishMsg(&nats.Msg{Subject: subject.User(2000), Header: p.hdr, Data: p.push}); err != nil {
			b.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	<-got
}
