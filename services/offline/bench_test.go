package offline

import (
	"fmt"
	"slices"
	"testing"

	"github.com/natter-chat/natter/shared/api"
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
