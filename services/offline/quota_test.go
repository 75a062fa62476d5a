package offline

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
)

// TestInboxFull answers stores past an inbox's limit with inbox_full, for
// a store and in a store of several; a group message is stored for the
// members with room and its answer names the others; a message to oneself
// is stored like any other and counts against one's own inbox; an ack
// makes room again.
func TestInboxFull(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ns := natstest.Run(t)
		s := start(t, ns, db, Config{InboxMaxMessages: 2})
		nc := natstest.Connect(t, ns)
		for i := range 2 {
			if _, err := store(nc, api.StoreRequest{From: 1, To: []int64{2}, CID: fmt.Sprint("a", i), Body: textBody("hi")}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := store(nc, api.StoreRequest{From: 1, To: []int64{2}, CID: "a2", Body: textBody("hi")}); !errors.Is(err, api.ErrInboxFull) {
			t.Errorf("third store: %v, want %v", err, api.ErrInboxFull)
		}
		// To oneself: allowed, within the same limit.
		for i := range 3 {
			_, err := store(nc, api.StoreRequest{From: 5, To: []int64{5}, CID: fmt.Sprint("self", i), Body: textBody("note")})
			if full := errors.Is(err, api.ErrInboxFull); (i < 2 && err != nil) || (i == 2 && !full) {
				t.Errorf("note to self %d: %v", i, err)
			}
		}
		if got := fetch(t, nc, 5, 0, 0); len(got.Messages) != 2 || got.Messages[0].From != 5 {
			t.Errorf("notes to self: %+v", got)
		}
		// A group message: stored for 3, refused for 2.
		resp, err := store(nc, api.StoreRequest{From: 1, To: []int64{2, 3}, CID: "g", Body: textBody("all")})
		if err != nil || resp.MID == "" || !slices.Equal(resp.Refused, []int64{2}) {
			t.Errorf("group: %+v %v", resp, err)
		}
		// In a store of several.
		reqs := [][]byte{api.AppendStoreRequest(nil, 1, []int64{2}, "m1", textBody("x")), api.AppendStoreRequest(nil, 1, []int64{4}, "m2", textBody("y"))}
		msg, err := nc.Request(subject.OfflineStoreMany, api.AppendStoreMany(nil, reqs), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		res, err := api.DecodeStoreManyResponse(msg.Data, 2)
		if err != nil || !errors.Is(res[0].Err(), api.ErrInboxFull) || res[1].Err() != nil {
			t.Errorf("store of several: %+v %v", res, err)
		}
		// An ack makes room.
		if err := call(nc, subject.OfflineAck, api.AckRequest{Acks: []api.Ack{{UserID: 2, Seq: 1}}}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := store(nc, api.StoreRequest{From: 1, To: []int64{2}, CID: "a3", Body: textBody("hi")}); err != nil {
			t.Errorf("store after an ack: %v", err)
		}
		if got, want := s.storeStats().InboxFull, int64(3); got != want {
			t.Errorf("stats: %d refused for a full inbox, want %d", got, want)
		}
		if got := testutil.ToFloat64(s.metrics.refused[refusedInboxFull]); got != 3 {
			t.Errorf("metric: %v refused for a full inbox, want 3", got)
		}
	})
}

// TestSenderRate refuses a sender's stores past its burst with send_rate,
// and not another sender's.
func TestSenderRate(t *testing.T) {
	ns := natstest.Run(t)
	s := start(t, ns, dbtest.SQLite(t), Config{SenderRate: 1, SenderBurst: api.MaxBodyLen})
	nc := natstest.Connect(t, ns)
	body := textBody(strings.Repeat("x", 10<<10)) // 6 fit the burst
	for i := range 7 {
		_, err := store(nc, api.StoreRequest{From: 1, To: []int64{2}, CID: fmt.Sprint(i), Body: body})
		if i < 6 && err != nil {
			t.Fatalf("store %d: %v", i, err)
		}
		if i == 6 && !errors.Is(err, api.ErrSendRate) {
			t.Fatalf("store %d: %v, want %v", i, err, api.ErrSendRate)
		}
	}
	if _, err := store(nc, api.StoreRequest{From: 3, To: []int64{2}, CID: "other", Body: body}); err != nil {
		t.Errorf("another sender: %v", err)
	}
	if got := s.storeStats().SendRate; got != 1 {
		t.Errorf("stats: %d refused for the rate, want 1", got)
	}
}

// TestSenderRateBucket checks the bucket's arithmetic: it refills at the
// rate, up to the burst.
func TestSenderRateBucket(t *testing.T) {
	r := newSenderRates(100, 1000)
	t0 := time.Unix(0, 0)
	if !r.allow(1, 1000, t0) || r.allow(1, 1, t0) {
		t.Fatal("burst")
	}
	if !r.allow(1, 100, t0.Add(time.Second)) || r.allow(1, 1, t0.Add(time.Second)) {
		t.Fatal("refill")
	}
	if !r.allow(1, 1000, t0.Add(time.Hour)) || r.allow(1, 1, t0.Add(time.Hour)) {
		t.Fatal("refill is capped at the burst")
	}
	if !newSenderRates(-1, 0).allow(1, 1<<30, t0) {
		t.Fatal("no limit")
	}
}
