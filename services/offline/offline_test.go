package offline

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
)

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// start runs a service instance on its own connection to ns, stopped when
// the test ends (before the connection closes).
func start(t *testing.T, ns *server.Server, db *sqldb.DB, cfg Config) *Service {
	t.Helper()
	return natstest.StartService(t, ns, Start, db, cfg, testLog(t))
}

func call(nc *nats.Conn, subj string, req, resp any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return api.Call(ctx, nc, subj, req, resp)
}

func store(nc *nats.Conn, req api.StoreRequest) (api.StoreResponse, error) {
	var resp api.StoreResponse
	err := call(nc, subject.OfflineStore, req, &resp)
	return resp, err
}

func fetch(t *testing.T, nc *nats.Conn, user, after int64, limit int) api.FetchResponse {
	t.Helper()
	var resp api.FetchResponse
	if err := call(nc, subject.OfflineFetch, api.FetchRequest{UserID: user, After: after, Limit: limit}, &resp); err != nil {
		t.Fatalf("fetch %d after %d: %v", user, after, err)
	}
	return resp
}

func textBody(s string) json.RawMessage {
	b, err := json.Marshal(map[string]string{"text": s})
	if err != nil {
		panic(err)
	}
	return b
}

// pushLog records the pushes for some users, and checks on arrival that
// each entry is already committed.
type pushLog struct {
	mu        sync.Mutex
	byUser    map[int64][]api.InboxMessage
	early     atomic.Int64 // pushes that arrived before their entry was readable
	badHeader atomic.Int64
}

func watchPushes(t *testing.T, nc *nats.Conn, s *Service, users ...int64) *pushLog {
	t.Helper()
	pl := &pushLog{byUser: map[int64][]api.InboxMessage{}}
	for _, u := range users {
		_, err := nc.Subscribe(subject.User(u), func(m *nats.Msg) {
			if m.Header.Get(subject.KindHeader) != subject.KindMsg {
				pl.badHeader.Add(1)
			}
			var im api.InboxMessage
			if err := json.Unmarshal(m.Data, &im); err != nil {
				t.Errorf("push to %d: %v", u, err)
				return
			}
			page, err := s.store.Fetch(context.Background(), u, im.Seq-1, 1, 1<<20)
			if err != nil || len(page.Messages) != 1 || page.Messages[0].MID != im.MID {
				pl.early.Add(1)
			}
			pl.mu.Lock()
			pl.byUser[u] = append(pl.byUser[u], im)
			pl.mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return pl
}

func (pl *pushLog) get(u int64) []api.InboxMessage {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return slices.Clone(pl.byUser[u])
}

// holdWriteLock holds the database's write lock on inbox user's state
// (SQLite: the whole database) until release, so a writer storing a
// message to user blocks.
func holdWriteLock(t *testing.T, db *sqldb.DB, user int64) (release func()) {
	t.Helper()
	locked, free, done := make(chan error, 1), make(chan struct{}), make(chan struct{})
	errReleased := errors.New("released")
	go func() {
		defer close(done)
		err := db.InTx(context.Background(), func(tx *sql.Tx) error {
			if _, err := tx.Exec("INSERT INTO inbox_state (user_id, last_seq, acked_seq) VALUES (?, 0, 0)", user); err != nil {
				return err
			}
			locked <- nil
			<-free
			return errReleased // rolled back
		})
		if !errors.Is(err, errReleased) {
			locked <- err
		}
	}()
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(free)
			<-done
		})
	}
	t.Cleanup(release)
	return release
}

// storeAsync sends a store request from its own goroutine; the error
// arrives on the returned channel.
func storeAsync(nc *nats.Conn, req api.StoreRequest) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := store(nc, req)
		done <- err
	}()
	return done
}

// TestConcurrentStores stores from many senders at once through one
// writer (pushes in seq order) and through several (MySQL's default:
// pushes of group messages from two writers may overtake each other; the
// gateway fills the gap).
func TestConcurrentStores(t *testing.T) {
	for _, writers := range []int{1, 4} {
		t.Run(fmt.Sprint("writers=", writers), func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
				ns := natstest.Run(t)
				s := start(t, ns, db, Config{Writers: writers})
				concurrentStores(t, ns, []*Service{s}, writers == 1)
			})
		})
	}
}

// TestTwoInstances runs two instances (queue group) with two writers each
// on one NATS server and one database.
func TestTwoInstances(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ns := natstest.Run(t)
		a := start(t, ns, db, Config{Writers: 2})
		b := start(t, ns, db, Config{Writers: 2})
		concurrentStores(t, ns, []*Service{a, b}, false)
		for i, s := range []*Service{a, b} {
			if st := s.storeStats(); st.Stored == 0 {
				t.Errorf("instance %d stored nothing: %+v", i, st)
			}
		}
	})
}

// concurrentStores has 8 senders store 100 messages each to overlapping
// recipients, then checks every inbox holds seqs 1..N with the right
// messages, and that every entry was pushed after its commit (in seq order
// when ordered).
func concurrentStores(t *testing.T, ns *server.Server, svcs []*Service, ordered bool) {
	const senders, perSender, users = 8, 100, 6
	nc := natstest.Connect(t, ns)
	var all []int64
	for u := range int64(users) {
		all = append(all, u+1)
	}
	pl := watchPushes(t, nc, svcs[0], all...)

	var mu sync.Mutex
	want := map[int64]map[string]bool{} // user -> mids sent to them
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range perSender {
				to := []int64{int64(1 + (g+i)%users), int64(1 + (g+2*i+1)%users)}
				if i%4 == 0 {
					to = append(to, int64(1+(g*i+3)%users))
				}
				req := api.StoreRequest{From: int64(100 + g), To: to, Body: textBody(fmt.Sprintf("%d/%d", g, i))}
				if i%2 == 0 {
					req.CID = fmt.Sprintf("s%d-%d", g, i)
				}
				resp, err := store(nc, req)
				if err != nil {
					t.Errorf("sender %d message %d: %v", g, i, err)
					return
				}
				if resp.Duplicate {
					t.Errorf("sender %d message %d: duplicate", g, i)
				}
				mu.Lock()
				for _, u := range to {
					if want[u] == nil {
						want[u] = map[string]bool{}
					}
					want[u][resp.MID] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	for _, u := range all {
		n := len(want[u])
		page := fetch(t, nc, u, 0, MaxFetchLimit)
		if page.Last != int64(n) || len(page.Messages) != n {
			t.Fatalf("user %d: last %d, %d entries, want %d", u, page.Last, len(page.Messages), n)
		}
		got := map[string]bool{}
		for k, m := range page.Messages {
			if m.Seq != int64(k+1) {
				t.Fatalf("user %d: entry %d has seq %d", u, k, m.Seq)
			}
			got[m.MID] = true
		}
		if !maps.Equal(got, want[u]) {
			t.Errorf("user %d: stored mids differ from the ones answered", u)
		}

		eventually.NoError(t, 10*time.Second, func() error {
			if len(pl.get(u)) < n {
				return fmt.Errorf("%d pushes to user %d", n, u)
			}
			return nil
		})
		pushes := pl.get(u)
		if len(pushes) != n {
			t.Fatalf("user %d: %d pushes, want %d", u, len(pushes), n)
		}
		if !ordered {
			slices.SortFunc(pushes, func(a, b api.InboxMessage) int { return int(a.Seq - b.Seq) })
		}
		for k, p := range pushes {
			m := page.Messages[k]
			if p.Seq != m.Seq || p.MID != m.MID || p.From != m.From || string(p.Body) != string(m.Body) {
				t.Fatalf("user %d: push %d is %+v, entry is %+v", u, k, p, m)
			}
		}
	}
	if n := pl.early.Load(); n > 0 {
		t.Errorf("%d pushes arrived before their entry was committed", n)
	}
	if n := pl.badHeader.Load(); n > 0 {
		t.Errorf("%d pushes without %s: %s", n, subject.KindHeader, subject.KindMsg)
	}
}

// TestBatching queues 200 store requests behind a blocked writer and
// checks they are stored in one batch.
func TestBatching(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ns := natstest.Run(t)
		s := start(t, ns, db, Config{Writers: 1})
		nc := natstest.Connect(t, ns)
		release := holdWriteLock(t, db, 1000)

		first := storeAsync(nc, api.StoreRequest{From: 1, To: []int64{1000}, Body: textBody("first")})
		eventually.NoError(t, 5*time.Second, func() error {
			st := s.storeStats()
			if !(st.Accepted == 1 && st.QueueLen == 0) {
				return errors.New("still waiting for the writer to take the first request")
			}
			return nil
		})

		const n = 200
		var done []<-chan error
		for i := range n {
			done = append(done, storeAsync(nc, api.StoreRequest{From: 2, To: []int64{int64(1 + i%7)}, Body: textBody("queued")}))
		}
		eventually.NoError(t, 5*time.Second, func() error {
			if got := s.storeStats().QueueLen; got != n {
				return fmt.Errorf("still waiting for 200 queued requests: got %v, want == n", got)
			}
			return nil
		})
		release()

		if err := <-first; err != nil {
			t.Fatal(err)
		}
		for _, d := range done {
			if err := <-d; err != nil {
				t.Fatal(err)
			}
		}
		if st := s.storeStats(); st.Batches != 2 || st.MaxBatch != n || st.Stored != n+1 {
			t.Errorf("stats %+v, want 2 batches, the largest %d", st, n)
		}
	})
}

func TestQueueFull(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ns := natstest.Run(t)
		s := start(t, ns, db, Config{QueueLimit: 2, Writers: 1})
		nc := natstest.Connect(t, ns)
		release := holdWriteLock(t, db, 1000)

		first := storeAsync(nc, api.StoreRequest{From: 1, To: []int64{1000}, Body: textBody("1")})
		eventually.NoError(t, 5*time.Second, func() error {
			st := s.storeStats()
			if !(st.Accepted == 1 && st.QueueLen == 0) {
				return errors.New("still waiting for the writer to take the first request")
			}
			return nil
		})
		queued := []<-chan error{
			storeAsync(nc, api.StoreRequest{From: 1, To: []int64{2}, Body: textBody("2")}),
			storeAsync(nc, api.StoreRequest{From: 1, To: []int64{2}, Body: textBody("3")}),
		}
		eventually.NoError(t, 5*time.Second, func() error {
			if got := s.storeStats().QueueLen; got != 2 {
				return fmt.Errorf("still waiting for a full queue: got %v, want == 2", got)
			}
			return nil
		})

		_, err := store(nc, api.StoreRequest{From: 1, To: []int64{2}, Body: textBody("4")})
		if !errors.Is(err, api.ErrBusy) {
			t.Fatalf("store with a full queue: %v, want busy", err)
		}
		release()
		for _, d := range append(queued, first) {
			if err := <-d; err != nil {
				t.Fatal(err)
			}
		}
		if st := s.storeStats(); st.Busy != 1 || st.Stored != 3 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestStopAnswersQueued stops a service with requests queued behind a
// blocked writer: Stop stores and answers all of them.
func TestStopAnswersQueued(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ns := natstest.Run(t)
		s := start(t, ns, db, Config{Writers: 1})
		nc := natstest.Connect(t, ns)
		release := holdWriteLock(t, db, 1000)

		done := []<-chan error{storeAsync(nc, api.StoreRequest{From: 1, To: []int64{1000}, Body: textBody("first")})}
		eventually.NoError(t, 5*time.Second, func() error {
			st := s.storeStats()
			if !(st.Accepted == 1 && st.QueueLen == 0) {
				return errors.New("still waiting for the writer to take the first request")
			}
			return nil
		})
		const n = 50
		for i := range n {
			done = append(done, storeAsync(nc, api.StoreRequest{From: 1, To: []int64{2}, CID: fmt.Sprint(i), Body: textBody("q")}))
		}
		eventually.NoError(t, 5*time.Second, func() error {
			if got := s.storeStats().QueueLen; got != n {
				return fmt.Errorf("still waiting for queued requests: got %v, want == n", got)
			}
			return nil
		})

		stopped := make(chan error, 1)
		go func() { stopped <- s.Stop() }()
		eventually.NoError(t, 5*time.Second, func() error {
			s.gate.RLock()
			defer s.gate.RUnlock()
			if !s.closed {
				return errors.New("still waiting for the queue to close")
			}
			return nil
		})
		release()
		if err := <-stopped; err != nil {
			t.Fatalf("stop: %v", err)
		}
		for i, d := range done {
			if err := <-d; err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
		page, err := s.store.Fetch(context.Background(), 2, 0, 1000, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if page.Last != n {
			t.Errorf("inbox 2 has %d entries, want %d", page.Last, n)
		}
		_, err = store(nc, api.StoreRequest{From: 1, To: []int64{2}, Body: textBody("late")})
		if !errors.Is(err, api.ErrUnavailable) {
			t.Errorf("store after stop: %v, want unavailable", err)
		}
	})
}

func TestStoreCID(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ns := natstest.Run(t)
		start(t, ns, db, Config{})
		nc := natstest.Connect(t, ns)

		req := api.StoreRequest{From: 1, To: []int64{2}, CID: "abc", Body: textBody("hello")}
		first, err := store(nc, req)
		if err != nil || first.Duplicate {
			t.Fatalf("first store: %+v, %v", first, err)
		}
		again, err := store(nc, req)
		if err != nil || !again.Duplicate || again.MID != first.MID {
			t.Fatalf("second store: %+v, %v; want duplicate of %s", again, err, first.MID)
		}
		if page := fetch(t, nc, 2, 0, 10); page.Last != 1 || len(page.Messages) != 1 {
			t.Fatalf("inbox after a duplicate: %+v", page)
		}

		// The same cid from two goroutines at once stores once.
		const rounds = 10
		for r := range rounds {
			req := api.StoreRequest{From: 1, To: []int64{3}, CID: fmt.Sprintf("race-%d", r), Body: textBody("x")}
			var resps [2]api.StoreResponse
			var wg sync.WaitGroup
			for g := range resps {
				wg.Go(func() {
					var err error
					if resps[g], err = store(nc, req); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if resps[0].MID != resps[1].MID || resps[0].Duplicate == resps[1].Duplicate {
				t.Fatalf("round %d: %+v", r, resps)
			}
		}
		if page := fetch(t, nc, 3, 0, 100); page.Last != rounds {
			t.Errorf("inbox 3 has %d entries, want %d", page.Last, rounds)
		}
	})
}

// TestRoundTrip checks bodies come back byte for byte, in fetches, in
// pushes and in the database.
func TestRoundTrip(t *testing.T) {
	var cjk strings.Builder
	for cjk.Len() < 16<<10 {
		cjk.WriteString("漢字かなカナ한글😀🎉👩‍👩‍👧")
	}
	control := "it's \"quoted\" \\ back\\slash / \x01\x07\x1b\x1f\t\r\n end"
	bodies := map[string]json.RawMessage{
		"16 KiB CJK and emoji":   textBody(cjk.String()),
		"quotes and controls":    textBody(control),
		"nested and numbers":     json.RawMessage(`{"a":[1,2.5e10,-3,true,false,null],"b":{"c":"\u00e9"}}`),
		"not canonical (spaced)": json.RawMessage(" { \"html\" : \"<b>&amp;</b>\",\n \"u\": \"\u2028\" } "),
	}
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ns := natstest.Run(t)
		s := start(t, ns, db, Config{})
		nc := natstest.Connect(t, ns)
		pl := watchPushes(t, nc, s, 2)

		var order []string
		for name := range bodies {
			order = append(order, name)
		}
		slices.Sort(order)
		for i, name := range order {
			body := bodies[name]
			var canon bytes.Buffer // the canonical form: compact, nothing escaped
			if err := json.Compact(&canon, body); err != nil {
				t.Fatal(err)
			}
			want := canon.Bytes()
			if name != "not canonical (spaced)" && string(want) != string(body) {
				t.Fatalf("%s: test body is not canonical", name)
			}
			resp, err := store(nc, api.StoreRequest{From: 1, To: []int64{2}, Body: body})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			page := fetch(t, nc, 2, int64(i), 1)
			if len(page.Messages) != 1 || page.Messages[0].MID != resp.MID {
				t.Fatalf("%s: fetch %+v", name, page)
			}
			if got := page.Messages[0].Body; string(got) != string(want) {
				t.Errorf("%s: fetched body differs (%d bytes, want %d)", name, len(got), len(want))
			}
			var stored string
			if err := db.ReadQueryRow(context.Background(), "SELECT body FROM inbox_entries WHERE user_id = 2 AND seq = ?", i+1).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if stored != string(want) {
				t.Errorf("%s: stored body differs", name)
			}
			eventually.NoError(t, 5*time.Second, func() error {
				if got := len(pl.get(2)); got <= i {
					return fmt.Errorf("still waiting for the push: got %v, want > i", got)
				}
				return nil
			})
			if got := pl.get(2)[i].Body; string(got) != string(want) {
				t.Errorf("%s: pushed body differs", name)
			}
		}
	})
}

func TestFetchAck(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ns := natstest.Run(t)
		start(t, ns, db, Config{})
		nc := natstest.Connect(t, ns)
		for i := range 5 {
			if _, err := store(nc, api.StoreRequest{From: 1, To: []int64{2}, Body: textBody(fmt.Sprint(i))}); err != nil {
				t.Fatal(err)
			}
		}
		seqs := func(p api.FetchResponse) []int64 {
			out := []int64{}
			for _, m := range p.Messages {
				out = append(out, m.Seq)
			}
			return out
		}
		ack := func(seq int64) {
			t.Helper()
			if err := call(nc, subject.OfflineAck, api.AckRequest{Acks: []api.Ack{{UserID: 2, Seq: seq}}}, nil); err != nil {
				t.Fatal(err)
			}
		}
		if got := seqs(fetch(t, nc, 2, 2, 0)); !slices.Equal(got, []int64{3, 4, 5}) {
			t.Errorf("after 2: %v", got)
		}
		if got := seqs(fetch(t, nc, 2, -1, 2)); !slices.Equal(got, []int64{1, 2}) {
			t.Errorf("after acked, limit 2: %v", got)
		}
		ack(3)
		ack(1) // never decreases
		p := fetch(t, nc, 2, -1, 0)
		if got := seqs(p); !slices.Equal(got, []int64{4, 5}) || p.Acked != 3 || p.Last != 5 {
			t.Errorf("after ack 3: %v acked %d last %d", got, p.Acked, p.Last)
		}
		ack(99) // clamped to 5
		p = fetch(t, nc, 2, -1, 0)
		if len(p.Messages) != 0 || p.Acked != 5 {
			t.Errorf("after ack 99: %+v", p)
		}
		if _, err := store(nc, api.StoreRequest{From: 1, To: []int64{2}, Body: textBody("6")}); err != nil {
			t.Fatal(err)
		}
		if got := seqs(fetch(t, nc, 2, -1, 0)); !slices.Equal(got, []int64{6}) {
			t.Errorf("new message after a clamped ack: %v", got)
		}
	})
}

func TestPruner(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ns := natstest.Run(t)
		start(t, ns, db, Config{Retention: time.Nanosecond, PruneEvery: 5 * time.Millisecond})
		nc := natstest.Connect(t, ns)
		for i := range 3 {
			if _, err := store(nc, api.StoreRequest{From: 1, To: []int64{2}, Body: textBody(fmt.Sprint(i))}); err != nil {
				t.Fatal(err)
			}
		}
		if err := call(nc, subject.OfflineAck, api.AckRequest{Acks: []api.Ack{{UserID: 2, Seq: 2}}}, nil); err != nil {
			t.Fatal(err)
		}
		// Entries and then their messages go, each in transactions of
		// their own.
		var n int
		eventually.NoError(t, 5*time.Second, func() error {
			p := fetch(t, nc, 2, 0, 0)
			err := db.ReadQueryRow(context.Background(), "SELECT (SELECT COUNT(*) FROM inbox_entries) + (SELECT COUNT(*) FROM bodies)").Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			if !(len(p.Messages) == 1 && p.Messages[0].Seq == 3 && n == 1) {
				return errors.New("still waiting for acknowledged entries and their messages to be pruned")
			}
			return nil
		})
	})
}

func TestBadRequests(t *testing.T) {
	many := make([]string, DefaultMaxRecipients+1)
	for i := range many {
		many[i] = fmt.Sprint(i + 1)
	}
	tooMany := `{"from":1,"to":[` + strings.Join(many, ",") + `],"body":{}}`
	big := `{"from":1,"to":[2],"body":{"t":"` + strings.Repeat("x", api.MaxBodyLen) + `"}}`
	longCID := `{"from":1,"to":[2],"cid":"` + strings.Repeat("c", api.MaxCIDLen+1) + `","body":{}}`
	cases := []struct {
		name, subject, payload string
	}{
		{"store malformed JSON", subject.OfflineStore, `{"from":1,`},
		{"store not an object", subject.OfflineStore, `[1,2]`},
		{"store wrong type", subject.OfflineStore, `{"from":"x","to":[2],"body":{}}`},
		{"store from 0", subject.OfflineStore, `{"from":0,"to":[2],"body":{}}`},
		{"store no recipients", subject.OfflineStore, `{"from":1,"to":[],"body":{}}`},
		{"store too many recipients", subject.OfflineStore, tooMany},
		{"store recipient 0", subject.OfflineStore, `{"from":1,"to":[2,0],"body":{}}`},
		{"store no body", subject.OfflineStore, `{"from":1,"to":[2]}`},
		{"store body a string", subject.OfflineStore, `{"from":1,"to":[2],"body":"hi"}`},
		{"store body an array", subject.OfflineStore, `{"from":1,"to":[2],"body":[{}]}`},
		{"store body null", subject.OfflineStore, `{"from":1,"to":[2],"body":null}`},
		{"store body too long", subject.OfflineStore, big},
		{"store body not UTF-8", subject.OfflineStore, "{\"from\":1,\"to\":[2],\"body\":{\"t\":\"\xff\xfe\"}}"},
		{"store cid too long", subject.OfflineStore, longCID},
		{"fetch malformed JSON", subject.OfflineFetch, `{"user_id":`},
		{"fetch user 0", subject.OfflineFetch, `{"user_id":0}`},
		{"fetch negative limit", subject.OfflineFetch, `{"user_id":1,"limit":-1}`},
		{"ack user 0", subject.OfflineAck, `{"acks":[{"user_id":0,"seq":1}]}`},
		{"ack negative seq", subject.OfflineAck, `{"acks":[{"user_id":1,"seq":-1}]}`},
		{"ack wrong type", subject.OfflineAck, `{"acks":{}}`},
	}
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ns := natstest.Run(t)
		start(t, ns, db, Config{})
		nc := natstest.Connect(t, ns)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				natstest.CheckRefused(t, nc, tc.subject, tc.payload, api.ErrBadRequest)
			})
		}
		// Still serving, and nothing was stored.
		resp, err := store(nc, api.StoreRequest{From: 1, To: []int64{2, 2, 3}, Body: json.RawMessage(` {"ok":true}`)})
		if err != nil || resp.MID == "" {
			t.Fatalf("valid store after bad ones: %+v, %v", resp, err)
		}
		if p := fetch(t, nc, 2, 0, 0); p.Last != 1 {
			t.Errorf("inbox 2 has %d entries, want 1 (recipients are deduplicated)", p.Last)
		}
	})
}

// TestMicroInfo checks the service and its endpoints are discoverable.
func TestMicroInfo(t *testing.T) {
	ns := natstest.Run(t)
	start(t, ns, dbtest.SQLite(t), Config{})
	natstest.CheckEndpoints(t, natstest.Connect(t, ns), subject.OfflineService,
		subject.OfflineStore, subject.OfflineStoreMany, subject.OfflineFetch, subject.OfflineAck)
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	for _, tc := range []struct {
		c    Config
		flag string // what the error names
	}{
		{Config{Retention: -time.Second}, "--retention -1s"},
		{Config{PruneEvery: -1}, "--prune-every -1ns"},
		{Config{BatchSize: -1}, "--batch-size -1"},
		{Config{BatchSize: maxBatchSize + 1}, fmt.Sprintf("--batch-size %d", maxBatchSize+1)},
		{Config{QueueLimit: -5}, "--queue-limit -5"},
		{Config{Writers: maxWriters + 1}, fmt.Sprintf("--writers %d", maxWriters+1)},
		{Config{Concurrency: -1}, "--db-conns"},
		{Config{RequestTimeout: -time.Second}, "--request-timeout -1s"},
		{Config{MaxRecipients: -1}, "--max-recipients -1"},
		{Config{SenderBurst: 1}, "--sender-burst 1"},
	} {
		if err := tc.c.Validate(); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%+v: Validate() = %v, want an error naming %q", tc.c, err, tc.flag)
		}
	}
	// Every problem at once is reported at once.
	all := Config{Retention: -1, PruneEvery: -1, BatchSize: -1, QueueLimit: -1, Writers: -1, Concurrency: -1,
		RequestTimeout: -1, MaxRecipients: -1, SenderBurst: 1}
	err := all.Validate()
	for _, flag := range []string{"--retention", "--prune-every", "--batch-size", "--queue-limit", "--writers",
		"--db-conns", "--request-timeout", "--max-recipients", "--sender-burst"} {
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("all bad: Validate() = %v, want it to name %s", err, flag)
		}
	}
	ns := natstest.Run(t)
	if _, err := Start(context.Background(), natstest.Connect(t, ns), dbtest.SQLite(t), Config{Writers: -1}, testLog(t)); err == nil {
		t.Error("Start accepted an invalid config")
	}
}

// TestStopUnderLoad stops a service while senders keep storing: every
// request is answered (stored, or refused with no responders once the
// service is gone; never busy, never dropped into a timeout), and every
// answered store is in its inbox.
func TestStopUnderLoad(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ns := natstest.Run(t)
		s := start(t, ns, db, Config{})
		nc := natstest.Connect(t, ns)
		const senders = 8
		stored := make([][]string, senders)
		var wg sync.WaitGroup
		for g := range senders {
			wg.Go(func() {
				for i := range 5000 {
					resp, err := store(nc, api.StoreRequest{From: 1, To: []int64{int64(10 + g)}, CID: fmt.Sprintf("%d-%d", g, i), Body: textBody("x")})
					switch {
					case err == nil:
						stored[g] = append(stored[g], resp.MID)
					case errors.Is(err, nats.ErrNoResponders):
						return
					default: // busy included: the queue never fills here

						t.Errorf("sender %d: %v", g, err)
						return
					}
				}
			})
		}
		eventually.NoError(t, 10*time.Second, func() error {
			if got := s.storeStats().Stored; got < 100 {
				return fmt.Errorf("still waiting for some stores: got %v, want >= 100", got)
			}
			return nil
		})
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for g := range senders {
			page, err := s.store.Fetch(context.Background(), int64(10+g), 0, 10000, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			var mids []string
			for _, m := range page.Messages {
				mids = append(mids, m.MID)
			}
			if !slices.Equal(mids, stored[g]) {
				t.Errorf("sender %d: %d answered, %d in the inbox", g, len(stored[g]), len(mids))
			}
		}
	})
}

// TestStoreMany: a store of several messages answers each in its place
// (a refused one among stored ones, a duplicate cid), and stores each
// recipient's messages in the order given, across writers.
func TestStoreMany(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ns := natstest.Run(t)
		start(t, ns, db, Config{Writers: 3})
		nc := natstest.Connect(t, ns)

		var reqs [][]byte
		for i := range 60 {
			to := int64(10 + i%3) // three recipients, likely on different writers
			reqs = append(reqs, api.AppendStoreRequest(nil, 1, []int64{to}, fmt.Sprintf("m-%d", i), textBody(fmt.Sprint(i))))
		}
		reqs = append(reqs, []byte(`{"from":1,"to":[],"body":{}}`))                                // refused: no recipient
		reqs = append(reqs, api.AppendStoreRequest(nil, 1, []int64{10}, "m-0", textBody("again"))) // a duplicate of m-0
		msg, err := nc.Request(subject.OfflineStoreMany, api.AppendStoreMany(nil, reqs), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := api.Decode(subject.OfflineStoreMany, msg, nil); err != nil {
			t.Fatal(err)
		}
		res, err := api.DecodeStoreManyResponse(msg.Data, len(reqs))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 60 {
			if res[i].Err() != nil || res[i].MID == "" || res[i].Duplicate {
				t.Fatalf("message %d: %+v", i, res[i])
			}
		}
		if !errors.Is(res[60].Err(), api.ErrBadRequest) {
			t.Fatalf("a message without recipients: %+v", res[60])
		}
		if !res[61].Duplicate || res[61].MID != res[0].MID {
			t.Fatalf("a cid stored before: %+v, first %+v", res[61], res[0])
		}
		for r := range 3 {
			page := fetch(t, nc, int64(10+r), 0, 100)
			if page.Last != 20 || len(page.Messages) != 20 {
				t.Fatalf("inbox %d: last %d, %d messages", 10+r, page.Last, len(page.Messages))
			}
			for k, m := range page.Messages {
				if want := fmt.Sprintf(`"text":"%d"`, r+3*k); !strings.Contains(string(m.Body), want) || m.Seq != int64(k+1) {
					t.Fatalf("inbox %d, seq %d: %s, want %s", 10+r, m.Seq, m.Body, want)
				}
			}
		}
		// A malformed store of several is refused whole.
		var ae *api.Error
		if err := call(nc, subject.OfflineStoreMany, map[string]any{"messages": []any{}}, nil); !errors.As(err, &ae) || !errors.Is(err, api.ErrBadRequest) {
			t.Fatalf("an empty store of several: %v", err)
		}
	})
}
