package cursor

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/natter-chat/natter/shared/api"
)

// inbox is a user's inbox as the offline service keeps it: seq n at index
// n-1; pruned seqs are missing from fetches.
type inbox struct {
	n      int64
	pruned map[int64]bool
	limit  int
}

func (b *inbox) msg(seq int64) api.InboxMessage {
	return api.InboxMessage{Seq: seq, MID: fmt.Sprint("m", seq), From: 1, Body: []byte(`{}`)}
}

func (b *inbox) fetch(after int64) *Page {
	p := &Page{Last: b.n, Messages: []api.InboxMessage{}}
	for s := after + 1; s <= b.n && len(p.Messages) < b.limit; s++ {
		if !b.pruned[s] {
			p.Messages = append(p.Messages, b.msg(s))
		}
	}
	return p
}

// sync drives a sync to its end, as the session does, and returns what
// was handed out. Pushes may arrive between steps (between(step)).
func sync(t *testing.T, c *Cursor, b *inbox, first *Page, budget int, between func(step int)) []int64 {
	t.Helper()
	var out []int64
	in := first
	for step := 0; ; step++ {
		if step > 100000 {
			t.Fatal("sync does not end")
		}
		emit, next := c.Step(in, budget)
		in = nil
		if len(emit) > budget {
			t.Fatalf("step handed out %d, budget %d", len(emit), budget)
		}
		for _, m := range emit {
			out = append(out, m.Seq)
		}
		if between != nil {
			between(step)
		}
		switch next {
		case Done:
			if c.Syncing() {
				t.Fatal("Done while syncing")
			}
			return out
		case Fetch:
			in = b.fetch(c.Delivered())
		case More:
		}
	}
}

func seqs(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func TestLiveInOrderAndDuplicates(t *testing.T) {
	b := &inbox{limit: 10}
	c := New(0, 100)
	if got := sync(t, c, b, b.fetch(0), 5, nil); len(got) != 0 {
		t.Fatalf("empty inbox replay handed out %v", got)
	}
	for s := int64(1); s <= 3; s++ {
		b.n = s
		if emit, sync := c.Push(b.msg(s)); !emit || sync {
			t.Fatalf("push %d: emit %v sync %v", s, emit, sync)
		}
	}
	if emit, sync := c.Push(b.msg(2)); emit || sync {
		t.Fatal("duplicate push handed out")
	}
	if c.Ack(10) != 3 || c.Ack(2) != 2 {
		t.Fatalf("ack clamp: %d %d", c.Ack(10), c.Ack(2))
	}
}

func TestGapIsFilledFromTheInbox(t *testing.T) {
	b := &inbox{limit: 10, n: 2}
	c := New(0, 100)
	sync(t, c, b, b.fetch(0), 5, nil) // hands out 1, 2
	b.n = 5
	// 3 and 4 were lost on the way (a NATS reconnect); 5 arrives.
	emit, needSync := c.Push(b.msg(5))
	if emit || !needSync {
		t.Fatalf("push after a gap: emit %v sync %v", emit, needSync)
	}
	if got := sync(t, c, b, nil, 5, nil); !slices.Equal(got, seqs(3, 5)) {
		t.Fatalf("gap fill handed out %v", got)
	}
}

func TestOvertakingPushes(t *testing.T) {
	b := &inbox{limit: 10}
	c := New(0, 100)
	sync(t, c, b, b.fetch(0), 5, nil)
	b.n = 3
	// 2 and 3 overtake 1 (two offline instances).
	if _, needSync := c.Push(b.msg(2)); !needSync {
		t.Fatal("no sync for an early push")
	}
	c.Push(b.msg(3))
	got := sync(t, c, b, nil, 5, func(int) {
		if emit, _ := c.Push(b.msg(1)); emit { // 1 arrives during the fill
			t.Fatal("a duplicate handed out")
		}
	})
	if !slices.Equal(got, seqs(1, 3)) {
		t.Fatalf("handed out %v", got)
	}
}

// TestReplayWithLivePushes: a login with 1,000 waiting messages; 50 more
// arrive as pushes while the replay runs, some twice.
func TestReplayWithLivePushes(t *testing.T) {
	b := &inbox{limit: 200, n: 1000}
	c := New(0, 1024)
	next := int64(1001)
	var live []int64 // handed out by Push after the replay ended
	got := sync(t, c, b, b.fetch(0), 64, func(step int) {
		if next <= 1050 {
			b.n = next
			for range 1 + int(next%7/6) { // every seventh twice
				if emit, _ := c.Push(b.msg(next)); emit {
					live = append(live, next)
				}
			}
			next++
		}
	})
	got = append(got, live...)
	for ; next <= 1050; next++ { // the replay ended before all arrived
		b.n = next
		if emit, _ := c.Push(b.msg(next)); !emit {
			t.Fatalf("live push %d not handed out after the replay", next)
		}
		got = append(got, next)
	}
	if !slices.Equal(got, seqs(1, 1050)) {
		t.Fatalf("handed out %d messages, first %v last %v", len(got), got[:3], got[len(got)-3:])
	}
}

// TestHeldOverflow: more pushes than can be held during a long replay:
// the inbox has them, nothing is lost.
func TestHeldOverflow(t *testing.T) {
	b := &inbox{limit: 10, n: 20}
	c := New(0, 8)
	next := int64(21)
	var live []int64
	got := sync(t, c, b, b.fetch(0), 5, func(int) {
		for range 5 {
			if next <= 100 {
				b.n = next
				if emit, _ := c.Push(b.msg(next)); emit {
					live = append(live, next)
				}
				next++
			}
		}
	})
	got = append(got, live...)
	for ; next <= 100; next++ {
		b.n = next
		c.Push(b.msg(next))
		got = append(got, next)
	}
	if !slices.Equal(got, seqs(1, 100)) {
		t.Fatalf("handed out %v", got)
	}
}

// TestPrunedGap: entries missing from the inbox (pruned) do not stall the
// user behind them.
func TestPrunedGap(t *testing.T) {
	b := &inbox{limit: 10, n: 10, pruned: map[int64]bool{4: true, 5: true, 6: true}}
	c := New(3, 100)
	b.n = 11
	c.Push(b.msg(11)) // held: syncing
	got := sync(t, c, b, b.fetch(3), 5, nil)
	if !slices.Equal(got, []int64{7, 8, 9, 10, 11}) {
		t.Fatalf("handed out %v", got)
	}
	// All pruned up to a held push: the sync skips to it.
	b2 := &inbox{limit: 10, n: 9, pruned: map[int64]bool{5: true, 6: true, 7: true, 8: true, 9: true}}
	c2 := New(4, 100)
	if got := sync(t, c2, b2, b2.fetch(4), 5, nil); len(got) != 0 {
		t.Fatalf("handed out %v", got)
	}
	b2.n = 10
	if _, needSync := c2.Push(b2.msg(10)); !needSync {
		t.Fatal("no sync")
	}
	got = sync(t, c2, b2, nil, 5, nil)
	if !slices.Equal(got, []int64{10}) {
		t.Fatalf("handed out %v", got)
	}
}

// TestRandomSchedules: pushes lost, doubled and overtaking each other,
// interleaved with fills and resyncs at random: every seq is handed out
// once, in order.
func TestRandomSchedules(t *testing.T) {
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 7))
		n := int64(1 + r.IntN(300))
		b := &inbox{limit: 1 + r.IntN(40)}
		c := New(0, 1+r.IntN(64))
		budget := 1 + r.IntN(32)
		var got []int64
		var pending []int64 // published, not yet routed to the gateway
		deliver := func() {
			if len(pending) == 0 {
				return
			}
			i := r.IntN(min(len(pending), 3)) // a little out of order
			s := pending[i]
			pending = append(pending[:i], pending[i+1:]...)
			if r.IntN(10) == 0 {
				return // lost
			}
			if r.IntN(10) == 0 {
				pending = append(pending, s) // doubled
			}
			if emit, needSync := c.Push(b.msg(s)); emit {
				got = append(got, s)
			} else if needSync {
				got = append(got, sync(t, c, b, nil, budget, nil)...)
			}
		}
		got = append(got, sync(t, c, b, b.fetch(0), budget, nil)...)
		for b.n < n || len(pending) > 0 {
			if b.n < n && r.IntN(2) == 0 {
				b.n++
				pending = append(pending, b.n)
			} else {
				deliver()
			}
		}
		if c.Resync() { // as after a NATS reconnect: what was lost comes from the inbox
			got = append(got, sync(t, c, b, nil, budget, nil)...)
		}
		if !slices.Equal(got, seqs(1, n)) {
			t.Fatalf("seed %d: handed out %v, want 1..%d", seed, got, n)
		}
	}
}
