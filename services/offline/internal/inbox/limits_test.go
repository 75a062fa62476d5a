package inbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/sqldb"
)

// TestInboxLimits fills inboxes to their limits of unacknowledged entries
// and bytes: a message that does not fit is refused (api.ErrInboxFull) in
// the same batch as those that fit, a group message is stored for the
// members with room and names the others, a cid repeated in the batch is
// refused like its first, and an ack makes room again. A second Store on
// the same database (another instance, or a restart) sees the same
// counts.
func TestInboxLimits(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db)
		s.SetLimits(Limits{Count: 3, Bytes: 1000})
		body := func(n int) []byte { return []byte(`{"t":"` + string(slices.Repeat([]byte("x"), n-8)) + `"}`) }
		one := func(cid string, to int64, n int) Pending {
			return Pending{From: 1, To: []int64{to}, CID: cid, Body: body(n)}
		}
		// Count: user 2 takes 3; the 4th and its repeat are refused.
		res, err := s.StoreBatch(ctx, []Pending{one("a", 2, 10), one("b", 2, 10), one("c", 2, 10), one("d", 2, 10), one("d", 2, 10)})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			full := errors.Is(r.Err, api.ErrInboxFull)
			if want := i >= 3; full != want || (!want && r.Err != nil) {
				t.Errorf("message %d: %+v, want refused %v", i, r, want)
			}
		}
		// Bytes: user 3 takes 600, then 400 fits exactly, then 1 byte more does not.
		res, err = s.StoreBatch(ctx, []Pending{one("e", 3, 600), one("f", 3, 400), one("g", 3, 10)})
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Err != nil || res[1].Err != nil || !errors.Is(res[2].Err, api.ErrInboxFull) {
			t.Errorf("bytes: %+v", res)
		}
		// A group message to 2 (full), 3 (full) and 4: stored for 4 only.
		g := Pending{From: 1, To: []int64{2, 3, 4}, CID: "g1", Body: body(10)}
		res = storeOK(t, s, g)
		if !slices.Equal(res[0].To, []int64{4}) || !slices.Equal(res[0].Refused, []int64{2, 3}) || len(res[0].Seqs) != 1 {
			t.Errorf("group: %+v", res[0])
		}
		// A group message to full inboxes only is refused.
		res, err = s.StoreBatch(ctx, []Pending{{From: 1, To: []int64{2, 3}, CID: "g2", Body: body(10)}})
		if err != nil || !errors.Is(res[0].Err, api.ErrInboxFull) {
			t.Errorf("group to full inboxes: %+v %v", res, err)
		}
		// An ack makes room: 2 acknowledges 2 entries, 3 the 600 bytes.
		if err := s.Ack(ctx, []api.Ack{{UserID: 2, Seq: 2}, {UserID: 3, Seq: 1}}); err != nil {
			t.Fatal(err)
		}
		// Another Store on the database reads the counts from it.
		s2 := New(db, s.log)
		s2.SetLimits(s.limits)
		if err := s2.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		for _, st := range []*Store{s, s2} {
			res, err = st.StoreBatch(ctx, []Pending{one("h"+fmtPtr(st), 2, 10), one("i"+fmtPtr(st), 3, 500)})
			if err != nil {
				t.Fatal(err)
			}
			if st == s && (res[0].Err != nil || res[1].Err != nil) {
				t.Errorf("after acks: %+v", res)
			}
			// 2 holds 3 again; 3 would hold 1400 bytes.
			if st == s2 && (res[0].Err != nil || !errors.Is(res[1].Err, api.ErrInboxFull)) {
				t.Errorf("full again: %+v", res)
			}
		}
		if res, err := s.StoreBatch(ctx, []Pending{one("j", 2, 10)}); err != nil || !errors.Is(res[0].Err, api.ErrInboxFull) {
			t.Errorf("after the other store filled it: %+v %v", res, err)
		}
		if n := count(t, db, "SELECT last_seq - acked_seq FROM inbox_state WHERE user_id = 2"); n != 3 {
			t.Errorf("user 2 holds %d unacknowledged, want 3", n)
		}
		if n := count(t, db, "SELECT bytes - acked_bytes FROM inbox_state WHERE user_id = 3"); n != 900 {
			t.Errorf("user 3 holds %d bytes unacknowledged, want 900", n)
		}
	})
}

// fmtPtr tells two Stores apart in a cid.
func fmtPtr(s *Store) string { return fmt.Sprintf("%p", s) }
