package inbox

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/sqldb"
)

func newStore(t testing.TB, db *sqldb.DB) *Store {
	t.Helper()
	return dbtest.Migrated(t, New(db, slog.New(slog.NewTextHandler(io.Discard, nil))))
}

func msg(from int64, cid string, to ...int64) Pending {
	return Pending{From: from, To: to, CID: cid, Body: []byte(fmt.Sprintf(`{"text":"from %d %s"}`, from, cid))}
}

func count(t *testing.T, db *sqldb.DB, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.ReadQueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// storedMessages counts the messages kept: one-to-one entries and group
// bodies.
func storedMessages(t *testing.T, db *sqldb.DB) int64 {
	t.Helper()
	return count(t, db, `SELECT (SELECT COUNT(*) FROM inbox_entries WHERE body_id IS NULL) + (SELECT COUNT(*) FROM bodies)`)
}

func storeOK(t *testing.T, s *Store, ps ...Pending) []Result {
	t.Helper()
	res, err := s.StoreBatch(context.Background(), ps)
	if err != nil {
		t.Fatalf("StoreBatch: %v", err)
	}
	if len(res) != len(ps) {
		t.Fatalf("StoreBatch: %d results for %d messages", len(res), len(ps))
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("StoreBatch: message %d: %v", i, r.Err)
		}
	}
	return res
}

func fetchAll(t *testing.T, s *Store, user int64) *api.FetchResponse {
	t.Helper()
	page, err := s.Fetch(context.Background(), user, 0, 100000, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

// TestStoreBatchSeqs stores 200 messages in one StoreBatch call and checks
// every inbox got contiguous seqs in request order.
func TestStoreBatchSeqs(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s := newStore(t, db)
		users := []int64{3, 1, 7, 5}
		var ps []Pending
		for i := range 200 {
			// Overlapping recipient sets in varying order.
			to := []int64{users[i%4], users[(i+1)%4]}
			if i%3 == 0 {
				to = append(to, users[(i+2)%4])
			}
			ps = append(ps, msg(int64(100+i%5), "", to...))
		}
		res := storeOK(t, s, ps...)

		want := map[int64][]string{} // user -> mids in seq order
		for i, r := range res {
			if r.Duplicate || r.MID == "" || len(r.Seqs) != len(ps[i].To) {
				t.Fatalf("result %d: %+v", i, r)
			}
			for j, u := range ps[i].To {
				want[u] = append(want[u], r.MID)
				if r.Seqs[j] != int64(len(want[u])) {
					t.Fatalf("message %d to %d: seq %d, want %d", i, u, r.Seqs[j], len(want[u]))
				}
			}
		}
		for _, u := range users {
			page := fetchAll(t, s, u)
			if page.Last != int64(len(want[u])) || page.Acked != 0 {
				t.Errorf("user %d: last %d acked %d, want last %d", u, page.Last, page.Acked, len(want[u]))
			}
			var got []string
			for k, m := range page.Messages {
				if m.Seq != int64(k+1) {
					t.Fatalf("user %d: entry %d has seq %d", u, k, m.Seq)
				}
				got = append(got, m.MID)
			}
			if !slices.Equal(got, want[u]) {
				t.Errorf("user %d: mids differ", u)
			}
		}

		// A second batch continues every inbox where the first stopped.
		res = storeOK(t, s, msg(1, "", 1, 3))
		if !slices.Equal(res[0].Seqs, []int64{int64(len(want[1]) + 1), int64(len(want[3]) + 1)}) {
			t.Errorf("second batch seqs %v", res[0].Seqs)
		}
		if n := storedMessages(t, db); n != 201 {
			t.Errorf("%d messages stored, want 201", n)
		}
	})
}

func TestStoreBatchCID(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s := newStore(t, db)
		first := storeOK(t, s, msg(1, "c1", 2))[0]
		if first.Duplicate {
			t.Fatal("first store is a duplicate")
		}
		again := storeOK(t, s, msg(1, "c1", 2))[0]
		if !again.Duplicate || again.MID != first.MID || again.Seqs != nil {
			t.Fatalf("repeat: %+v, want duplicate of %s", again, first.MID)
		}

		// In one batch: a stored cid, a new cid twice, no cid twice, the same
		// cid from another sender, and a cid differing only in case.
		res := storeOK(t, s,
			msg(1, "c1", 2),
			msg(1, "c2", 2),
			msg(1, "c2", 2),
			msg(1, "", 2),
			msg(1, "", 2),
			msg(9, "c2", 2),
			msg(1, "C2", 2),
		)
		if !res[0].Duplicate || res[0].MID != first.MID {
			t.Errorf("stored cid: %+v", res[0])
		}
		if res[1].Duplicate || !res[2].Duplicate || res[2].MID != res[1].MID || res[2].Seqs != nil {
			t.Errorf("same cid in one batch: %+v %+v", res[1], res[2])
		}
		for _, i := range []int{3, 4, 5, 6} {
			if res[i].Duplicate {
				t.Errorf("message %d is a duplicate: %+v", i, res[i])
			}
		}
		if res[3].MID == res[4].MID {
			t.Error("messages without cid share a mid")
		}
		// A group message's cid is its own: c1 again, to a group.
		if g := storeOK(t, s, msg(1, "c1", 2, 3))[0]; g.Duplicate {
			t.Errorf("group message with a one-to-one message's cid: %+v", g)
		}
		if g := storeOK(t, s, msg(1, "c1", 2, 3))[0]; !g.Duplicate {
			t.Errorf("group message repeated: %+v", g)
		}
		// Stored: c1, c2, two without cid, 9/c2, C2, the group c1.
		if n := storedMessages(t, db); n != 7 {
			t.Errorf("%d messages, want 7", n)
		}
		page := fetchAll(t, s, 2)
		if page.Last != 7 || len(page.Messages) != 7 {
			t.Errorf("inbox 2: last %d, %d entries, want 7", page.Last, len(page.Messages))
		}
	})
}

// TestStoreBatchCIDRace stores the same (from, cid) from several goroutines
// at once; exactly one stores it.
func TestStoreBatchCIDRace(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s := newStore(t, db)
		const rounds, racers = 20, 4
		for round := range rounds {
			cid := fmt.Sprintf("race-%d", round)
			results := make([]Result, racers)
			var wg sync.WaitGroup
			for g := range racers {
				wg.Go(func() {
					res, err := s.StoreBatch(context.Background(), []Pending{msg(1, cid, 2, int64(10+g))})
					if err != nil {
						t.Errorf("racer %d: %v", g, err)
						return
					}
					results[g] = res[0]
				})
			}
			wg.Wait()
			stored := 0
			for _, r := range results {
				if r.Err != nil {
					t.Fatalf("round %d: %v", round, r.Err)
				}
				if !r.Duplicate {
					stored++
				}
				if r.MID != results[0].MID {
					t.Fatalf("round %d: mids %s and %s", round, r.MID, results[0].MID)
				}
			}
			if stored != 1 {
				t.Fatalf("round %d: stored %d times", round, stored)
			}
		}
		if page := fetchAll(t, s, 2); page.Last != rounds || len(page.Messages) != rounds {
			t.Errorf("inbox 2: last %d, %d entries, want %d", page.Last, len(page.Messages), rounds)
		}
	})
}

// TestStoreBatchFallback: a message the database rejects fails alone.
func TestStoreBatchFallback(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s := newStore(t, db)
		bad := msg(0, "", 2) // violates CHECK (sender_id > 0)
		res, err := s.StoreBatch(context.Background(), []Pending{msg(1, "a", 2), bad, msg(1, "b", 2)})
		if err != nil {
			t.Fatal(err)
		}
		if res[1].Err == nil {
			t.Errorf("bad message stored: %+v", res[1])
		}
		if res[0].Err != nil || res[2].Err != nil {
			t.Fatalf("good messages failed: %v, %v", res[0].Err, res[2].Err)
		}
		if !slices.Equal(res[0].Seqs, []int64{1}) || !slices.Equal(res[2].Seqs, []int64{2}) {
			t.Errorf("seqs %v %v, want [1] [2]", res[0].Seqs, res[2].Seqs)
		}
		if _, err := s.StoreBatch(context.Background(), []Pending{bad}); err == nil {
			t.Error("a batch of one bad message succeeded")
		}
		if page := fetchAll(t, s, 2); page.Last != 2 {
			t.Errorf("inbox 2: last %d, want 2", page.Last)
		}
	})
}

func TestFetch(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s := newStore(t, db)
		ctx := context.Background()
		for range 10 {
			storeOK(t, s, msg(1, "", 2))
		}
		seqs := func(p *api.FetchResponse) []int64 {
			var out []int64
			for _, m := range p.Messages {
				out = append(out, m.Seq)
			}
			return out
		}
		for _, tc := range []struct {
			name         string
			after        int64
			limit, bytes int
			want         []int64
		}{
			{"all", 0, 100, 1 << 20, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
			{"after seq", 7, 100, 1 << 20, []int64{8, 9, 10}},
			{"after acked", -1, 100, 1 << 20, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
			{"limit", 2, 3, 1 << 20, []int64{3, 4, 5}},
			{"byte budget", 0, 100, 30, []int64{1}},
			{"past last", 10, 100, 1 << 20, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				page, err := s.Fetch(ctx, 2, tc.after, tc.limit, tc.bytes)
				if err != nil {
					t.Fatal(err)
				}
				if got := seqs(page); !slices.Equal(got, tc.want) {
					t.Errorf("seqs %v, want %v", got, tc.want)
				}
				if page.Last != 10 || page.Messages == nil {
					t.Errorf("last %d messages %v", page.Last, page.Messages)
				}
			})
		}
		if err := s.Ack(ctx, []api.Ack{{UserID: 2, Seq: 6}}); err != nil {
			t.Fatal(err)
		}
		page, err := s.Fetch(ctx, 2, -1, 2, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if got := seqs(page); !slices.Equal(got, []int64{7, 8}) || page.Acked != 6 {
			t.Errorf("after acked: seqs %v acked %d, want [7 8] acked 6", got, page.Acked)
		}
		m := page.Messages[0]
		if m.From != 1 || string(m.Body) != `{"text":"from 1 "}` || len(m.MID) != 36 {
			t.Errorf("entry %+v", m)
		}
		page, err = s.Fetch(ctx, 99, -1, 10, 1<<20)
		if err != nil || len(page.Messages) != 0 || page.Last != 0 || page.Acked != 0 {
			t.Errorf("unknown inbox: %+v, %v", page, err)
		}
	})
}

func TestAck(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s := newStore(t, db)
		ctx := context.Background()
		for range 5 {
			storeOK(t, s, msg(1, "", 2, 3))
		}
		acked := func(user int64) int64 {
			t.Helper()
			return fetchAll(t, s, user).Acked
		}
		steps := []struct {
			name  string
			acks  []api.Ack
			want2 int64
			want3 int64
		}{
			{"cumulative", []api.Ack{{UserID: 2, Seq: 2}}, 2, 0},
			{"forward", []api.Ack{{UserID: 2, Seq: 3}, {UserID: 3, Seq: 1}}, 3, 1},
			{"never decreases", []api.Ack{{UserID: 2, Seq: 1}}, 3, 1},
			{"highest of several", []api.Ack{{UserID: 3, Seq: 4}, {UserID: 3, Seq: 2}}, 3, 4},
			{"clamped at last", []api.Ack{{UserID: 2, Seq: 99}, {UserID: 77, Seq: 5}}, 5, 4},
		}
		for _, st := range steps {
			if err := s.Ack(ctx, st.acks); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if a2, a3 := acked(2), acked(3); a2 != st.want2 || a3 != st.want3 {
				t.Fatalf("%s: acked %d/%d, want %d/%d", st.name, a2, a3, st.want2, st.want3)
			}
		}
		// A clamped ack does not swallow later messages.
		storeOK(t, s, msg(1, "", 2))
		page, err := s.Fetch(ctx, 2, -1, 10, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Messages) != 1 || page.Messages[0].Seq != 6 {
			t.Errorf("after clamped ack: %+v", page.Messages)
		}
		if n := count(t, db, "SELECT COUNT(*) FROM inbox_state WHERE user_id = 77"); n != 0 {
			t.Error("ack created an inbox")
		}
	})
}

func TestPrune(t *testing.T) {
	// Batches of 1 row: every step takes several transactions.
	for _, batch := range []int{defaultPruneBatch, 1} {
		t.Run(fmt.Sprint("batch=", batch), func(t *testing.T) { testPrune(t, batch) })
	}
}

func testPrune(t *testing.T, batch int) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s := newStore(t, db)
		s.pruneBatch = batch
		ctx := context.Background()
		// m1 -> 2, 3; m2 -> 2; m3 -> 3.
		storeOK(t, s, msg(1, "m1", 2, 3), msg(1, "m2", 2), msg(1, "m3", 3))
		future := time.Now().Add(time.Hour)
		past := time.Now().Add(-time.Hour)
		prune := func(cutoff time.Time, wantEntries, wantMsgs int64) {
			t.Helper()
			e, m, err := s.Prune(ctx, cutoff)
			if err != nil {
				t.Fatal(err)
			}
			if e != wantEntries || m != wantMsgs {
				t.Fatalf("pruned %d entries, %d messages; want %d, %d", e, m, wantEntries, wantMsgs)
			}
		}
		// Nothing acknowledged: nothing goes, however old.
		prune(future, 0, 0)
		// Inbox 2 acknowledges everything; the entries are still younger
		// than a cutoff in the past.
		if err := s.Ack(ctx, []api.Ack{{UserID: 2, Seq: 2}, {UserID: 3, Seq: 1}}); err != nil {
			t.Fatal(err)
		}
		prune(past, 0, 0)
		// Old enough: both of 2's entries and 3's first go, and with them m1
		// and m2; m3 stays, 3 has not acknowledged it.
		prune(future, 3, 2)
		if n := storedMessages(t, db); n != 1 {
			t.Errorf("%d messages left, want 1", n)
		}
		page := fetchAll(t, s, 3)
		if len(page.Messages) != 1 || page.Messages[0].Seq != 2 || page.Acked != 1 || page.Last != 2 {
			t.Errorf("inbox 3 after prune: %+v", page)
		}
		if page := fetchAll(t, s, 2); len(page.Messages) != 0 || page.Last != 2 || page.Acked != 2 {
			t.Errorf("inbox 2 after prune: %+v", page)
		}
		// A cid is kept as long as its message: m3's still holds, m2's went
		// with it. (The new m2 takes inbox 2's seq 3.)
		if r := storeOK(t, s, msg(1, "m3", 3), msg(1, "m2", 2)); !r[0].Duplicate || r[1].Duplicate {
			t.Errorf("after prune: m3 %+v, m2 %+v; want m3 a duplicate, m2 stored", r[0], r[1])
		}
		// Seqs continue after a prune.
		if res := storeOK(t, s, msg(1, "", 2)); res[0].Seqs[0] != 4 {
			t.Errorf("seq after prune %d, want 4", res[0].Seqs[0])
		}
	})
}

// BenchmarkStoreBatch stores batches on SQLite the way the offline
// service's writer does, every message with a cid (the gateway gives every
// chat one):
//
//   - 1: one one-to-one message per batch (one pair in a closed loop);
//   - 50: 50 one-to-one messages from 50 senders to 50 recipients (50
//     pairs in a closed loop: every batch holds each pair once);
//   - group50: one group message to 49 members;
//   - mixed256: 256 messages, one to three recipients each.
//
// Each batch is synced before the next (Sync), as the service syncs before
// it answers. Besides ns/op it reports the CPU this process used per
// message (per recipient entry for the group), which is steadier than
// wall time on a shared machine, and msgs/s.
func BenchmarkStoreBatch(b *testing.B) {
	body := []byte(`{"msgid":5,"id":1000,"name":"b1-s0","toid":2000,"msg":"` + string(slices.Repeat([]byte("x"), 32)) + `"}`)
	shapes := []struct {
		name    string
		entries int // inbox entries per batch
		batch   func(round int) []Pending
	}{
		{"1", 1, func(round int) []Pending {
			return []Pending{{From: 1000, To: []int64{2000}, CID: fmt.Sprintf("c%d", round), Body: body}}
		}},
		{"50", 50, func(round int) []Pending {
			ps := make([]Pending, 50)
			for i := range ps {
				ps[i] = Pending{From: int64(1000 + i), To: []int64{int64(2000 + i)}, CID: fmt.Sprintf("c%d", round), Body: body}
			}
			return ps
		}},
		{"group50", 49, func(round int) []Pending {
			to := make([]int64, 49)
			for i := range to {
				to[i] = int64(2000 + i)
			}
			return []Pending{{From: 1000, To: to, CID: fmt.Sprintf("c%d", round), Body: body}}
		}},
		{"mixed256", 512, func(round int) []Pending {
			ps := make([]Pending, 256)
			for i := range ps {
				to := []int64{int64(i%100 + 1)}
				for k := range i % 3 {
					to = append(to, int64((i+k+1)%100+101))
				}
				ps[i] = Pending{From: int64(i%50 + 1000), To: to, CID: fmt.Sprintf("c%d-%d", round, i), Body: body}
			}
			return ps
		}},
	}
	for _, sh := range shapes {
		b.Run(sh.name, func(b *testing.B) {
			s := newStore(b, dbtest.SQLite(b))
			// Limits as the service sets them, never reached: their check
			// is measured, not refusals.
			s.SetLimits(Limits{Count: 1 << 40, Bytes: 1 << 50})
			ctx := context.Background()
			batches := make([][]Pending, 0, 1024)
			round := 0
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				if len(batches) == 0 {
					b.StopTimer()
					for range cap(batches) {
						round++
						batches = append(batches, sh.batch(round))
					}
					b.StartTimer()
				}
				ps := batches[len(batches)-1]
				batches = batches[:len(batches)-1]
				if _, err := s.StoreBatch(ctx, ps); err != nil {
					b.Fatal(err)
				}
				// Durable before it counts, as the service answers.
				if err := s.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			entries := float64(b.N * sh.entries)
			b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/entries, "cpu-us/entry")
			b.ReportMetric(entries/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// cpuTime is the CPU time (user + system) this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestMigrateV1 writes a version 1 database (messages stored once, inbox
// rows pointing at them by mid, acknowledgements in inbox_state) the way
// version 1 did, migrates it and reads it back.
func TestMigrateV1(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, "offline", migrations()[:1]); err != nil {
			t.Fatal(err)
		}
		type v1msg struct {
			mid, cid, body string
			from           int64
			to             map[int64]int64 // user -> seq
		}
		msgs := []v1msg{
			{"0190f2a4-0000-7000-8000-000000000001", "c1", `{"text":"one"}`, 1, map[int64]int64{2: 1}},
			{"0190f2a4-0000-7000-8000-000000000002", "", `{"text":"two"}`, 1, map[int64]int64{2: 2}},
			{"0190f2a4-0000-7000-8000-000000000003", "g1", `{"text":"group"}`, 5, map[int64]int64{2: 3, 3: 1, 4: 1}},
			// A group message whose other entries were pruned: one left.
			{"0190f2a4-0000-7000-8000-000000000004", "g2", `{"text":"group, pruned"}`, 5, map[int64]int64{3: 2}},
			// Pruned everywhere, not yet deleted: dropped.
			{"0190f2a4-0000-7000-8000-000000000005", "gone", `{"text":"orphan"}`, 1, nil},
		}
		for _, m := range msgs {
			var cid any
			if m.cid != "" {
				cid = m.cid
			}
			if _, err := db.ExecContext(context.Background(), "INSERT INTO messages (mid, sender_id, cid, body, created_at) VALUES (?, ?, ?, ?, 1)",
				m.mid, m.from, cid, m.body); err != nil {
				t.Fatal(err)
			}
			for u, seq := range m.to {
				if _, err := db.ExecContext(context.Background(), "INSERT INTO inbox (user_id, seq, mid, created_at) VALUES (?, ?, ?, 1)", u, seq, m.mid); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, st := range [][3]int64{{2, 3, 1}, {3, 2, 0}, {4, 1, 1}} {
			if _, err := db.ExecContext(context.Background(), "INSERT INTO inbox_state (user_id, last_seq, acked_seq) VALUES (?, ?, ?)", st[0], st[1], st[2]); err != nil {
				t.Fatal(err)
			}
		}

		s := newStore(t, db) // migrates to the current version
		want := map[int64][]api.InboxMessage{
			2: {{Seq: 1, MID: msgs[0].mid, From: 1, Body: []byte(msgs[0].body)},
				{Seq: 2, MID: msgs[1].mid, From: 1, Body: []byte(msgs[1].body)},
				{Seq: 3, MID: msgs[2].mid, From: 5, Body: []byte(msgs[2].body)}},
			3: {{Seq: 1, MID: msgs[2].mid, From: 5, Body: []byte(msgs[2].body)},
				{Seq: 2, MID: msgs[3].mid, From: 5, Body: []byte(msgs[3].body)}},
			4: {{Seq: 1, MID: msgs[2].mid, From: 5, Body: []byte(msgs[2].body)}},
		}
		acked := map[int64]int64{2: 1, 3: 0, 4: 1}
		for u, w := range want {
			page := fetchAll(t, s, u)
			if page.Acked != acked[u] || page.Last != int64(len(w)) || len(page.Messages) != len(w) {
				t.Fatalf("inbox %d: acked %d last %d, %d entries; want acked %d last %d", u, page.Acked, page.Last,
					len(page.Messages), acked[u], len(w))
			}
			for i, m := range page.Messages {
				if m.Seq != w[i].Seq || m.MID != w[i].MID || m.From != w[i].From || string(m.Body) != string(w[i].Body) {
					t.Errorf("inbox %d entry %d: %+v, want %+v", u, i, m, w[i])
				}
			}
		}
		// The group message is stored once, the orphan is gone, the v1
		// tables too.
		if n := storedMessages(t, db); n != 4 {
			t.Errorf("%d messages after the migration, want 4", n)
		}
		if n := count(t, db, "SELECT COUNT(*) FROM bodies"); n != 1 {
			t.Errorf("%d group bodies, want 1", n)
		}
		for _, table := range []string{"messages", "inbox"} {
			if _, err := db.ExecContext(context.Background(), "SELECT 1 FROM "+table); err == nil {
				t.Errorf("table %s still there", table)
			}
		}
		// cids still deduplicate; seqs continue.
		res := storeOK(t, s, msg(1, "c1", 2), Pending{From: 5, To: []int64{2, 3, 4}, CID: "g1", Body: []byte(`{}`)},
			msg(1, "c3", 2))
		if !res[0].Duplicate || res[0].MID != msgs[0].mid || !res[1].Duplicate || res[1].MID != msgs[2].mid {
			t.Errorf("repeats of migrated cids: %+v %+v", res[0], res[1])
		}
		if res[2].Duplicate || !slices.Equal(res[2].Seqs, []int64{4}) {
			t.Errorf("new message after the migration: %+v, want seq 4", res[2])
		}
		// Acknowledged entries are pruned as usual.
		if _, _, err := s.Prune(ctx, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if page := fetchAll(t, s, 4); len(page.Messages) != 0 {
			t.Errorf("inbox 4 after prune: %+v", page.Messages)
		}
		if page := fetchAll(t, s, 3); len(page.Messages) != 2 {
			t.Errorf("inbox 3 (nothing acknowledged) after prune: %+v", page.Messages)
		}
	})
}

// TestStoreBatchTwoProcesses stores to the same inboxes through two
// handles on one SQLite file, as two processes would: each writer's
// memory of last seqs must give way to the other's commits, also when
// they left no entry behind to collide with (pruned).
func TestStoreBatchTwoProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "natter.db")
	var stores []*Store
	for range 2 {
		db, err := sqldb.OpenSQLite(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		stores = append(stores, newStore(t, db))
	}
	want := map[int64]int64{}
	check := func(i int, res []Result, to []int64) {
		t.Helper()
		for j, u := range to {
			want[u]++
			if res[0].Seqs[j] != want[u] {
				t.Fatalf("message %d to %d through handle %d: seq %d, want %d", i, u, i%2, res[0].Seqs[j], want[u])
			}
		}
	}
	for i := range 40 {
		to := []int64{2}
		if i%3 == 0 {
			to = append(to, 3)
		}
		check(i, storeOK(t, stores[i%2], msg(1, fmt.Sprint(i), to...)), to)
		if i%5 == 4 {
			// Everything acknowledged and pruned: no entry is left for
			// a stale seq to collide with.
			ctx := context.Background()
			if err := stores[i%2].Ack(ctx, []api.Ack{{UserID: 2, Seq: want[2]}, {UserID: 3, Seq: want[3]}}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := stores[i%2].Prune(ctx, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestStoreMySQLWithoutReturning stores through the MySQL write path a
// server without INSERT ... RETURNING (MySQL itself, as opposed to
// MariaDB) takes: the last seqs are read back by a locking SELECT.
func TestStoreMySQLWithoutReturning(t *testing.T) {
	db := dbtest.MySQL(t)
	s := newStore(t, db)
	t.Logf("this server answers INSERT ... RETURNING: %v", s.returning)
	s.returning = false
	want := map[int64]int64{}
	for i := range 30 {
		to := []int64{int64(2 + i%3)}
		if i%4 == 0 {
			to = append(to, 9)
		}
		res := storeOK(t, s, msg(1, fmt.Sprint(i), to...), msg(2, "", to[0]))
		for k, r := range res {
			want[to[0]]++
			if r.Seqs[0] != want[to[0]] {
				t.Fatalf("round %d message %d: seqs %v, want %d", i, k, r.Seqs, want[to[0]])
			}
			if k == 0 && len(to) > 1 {
				want[9]++
				if r.Seqs[1] != want[9] {
					t.Fatalf("round %d: seqs %v, want %d for inbox 9", i, r.Seqs, want[9])
				}
			}
		}
	}
	if r := storeOK(t, s, msg(1, "3", 2)); !r[0].Duplicate {
		t.Errorf("repeated cid: %+v", r[0])
	}
}

// TestFetchWaitsForSync: on SQLite a write commits without waiting for the
// disk; a fetch that reads it first makes it durable (it never hands out
// what a crash could take back).
func TestFetchWaitsForSync(t *testing.T) {
	db := dbtest.SQLite(t)
	s := newStore(t, db)
	storeOK(t, s, msg(1, "a", 2))
	before := db.WALSyncs()
	page := fetchAll(t, s, 2)
	if len(page.Messages) != 1 {
		t.Fatalf("fetch: %+v", page)
	}
	if db.WALSyncs() != before+1 {
		t.Errorf("%d syncs after a fetch of an unsynced write, want %d", db.WALSyncs(), before+1)
	}
	// Synced already: a fetch does not sync again.
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	fetchAll(t, s, 2)
	if db.WALSyncs() != before+1 {
		t.Errorf("%d syncs, want %d: nothing was left to sync", db.WALSyncs(), before+1)
	}
}
