package natsreq

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestHeap pushes, moves and removes calls at random and checks after each
// step that the heap is ordered and every call knows its index.
func TestHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h callHeap
	var live []*call
	check := func(step int) {
		t.Helper()
		if len(h) != len(live) {
			t.Fatalf("step %d: heap holds %d calls, want %d", step, len(h), len(live))
		}
		for i, c := range h {
			if c.index != i {
				t.Fatalf("step %d: call at %d says %d", step, i, c.index)
			}
			if i > 0 && h[(i-1)/2].when > c.when {
				t.Fatalf("step %d: parent of %d is later", step, i)
			}
		}
	}
	for step := range 5000 {
		switch op := rng.IntN(3); {
		case op == 0 || len(live) == 0:
			c := &call{when: time.Duration(rng.IntN(1000)), index: -1}
			h.push(c)
			live = append(live, c)
		case op == 1:
			c := live[rng.IntN(len(live))]
			c.when = time.Duration(rng.IntN(1000))
			h.fix(c.index)
		default:
			i := rng.IntN(len(live))
			c := live[i]
			h.remove(c.index)
			if c.index != -1 {
				t.Fatalf("step %d: a removed call keeps index %d", step, c.index)
			}
			live = append(live[:i], live[i+1:]...)
		}
		check(step)
	}
	// Popping the top in turn gives the calls in time order.
	var last time.Duration
	for len(h) > 0 {
		c := h[0]
		if c.when < last {
			t.Fatalf("top %v after %v", c.when, last)
		}
		last = c.when
		h.remove(0)
	}
}

// BenchmarkDeadline compares the cost of watching one call's deadline
// (set when it starts, dropped when its reply comes) with 1,000 other
// calls in flight: the Requester's heap under its lock, against a
// time.AfterFunc per call.
func BenchmarkDeadline(b *testing.B) {
	const others = 1000
	b.Run("heap", func(b *testing.B) {
		var mu sync.Mutex
		var h callHeap
		for i := range others {
			h.push(&call{when: time.Duration(i) * time.Millisecond, index: -1})
		}
		c := &call{index: -1}
		b.ReportAllocs()
		for b.Loop() {
			mu.Lock()
			c.when = 300 * time.Millisecond
			h.push(c)
			mu.Unlock()
			mu.Lock()
			h.remove(c.index)
			mu.Unlock()
		}
	})
	b.Run("AfterFunc", func(b *testing.B) {
		f := func() {}
		for range others {
			t := time.AfterFunc(time.Hour, f)
			defer t.Stop()
		}
		b.ReportAllocs()
		for b.Loop() {
			t := time.AfterFunc(300*time.Millisecond, f)
			t.Stop()
		}
	})
}
