package offline

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natter-chat/natter/shared/sqldb"
)

// senderRates is a token bucket of body bytes per sender: each sender may
// store rate bytes a second, and burst at once. The buckets are checked in
// the store endpoints' handlers (one goroutine each), before a store is
// queued.
type senderRates struct {
	rate, burst float64 // rate <= 0: no limit
	mu          sync.Mutex
	buckets     map[int64]bucket
}

// bucket is a sender's tokens at a time.
type bucket struct {
	tokens float64
	at     time.Time
}

// maxBuckets bounds the senders remembered; past it the full buckets
// (senders quiet for burst/rate) are forgotten.
const maxBuckets = 1 << 16

func newSenderRates(rate, burst int64) *senderRates {
	return &senderRates{rate: float64(rate), burst: float64(burst), buckets: make(map[int64]bucket)}
}

// allow takes n bytes from sender's bucket at now; false (nothing taken)
// when it holds fewer.
func (r *senderRates) allow(sender int64, n int, now time.Time) bool {
	if r.rate <= 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.buckets[sender]
	if !ok {
		if len(r.buckets) >= maxBuckets {
			r.forgetFull(now)
		}
		b = bucket{tokens: r.burst, at: now}
	} else if d := now.Sub(b.at); d > 0 {
		b.tokens = math.Min(r.burst, b.tokens+d.Seconds()*r.rate)
		b.at = now
	}
	if b.tokens < float64(n) {
		r.buckets[sender] = b
		return false
	}
	b.tokens -= float64(n)
	r.buckets[sender] = b
	return true
}

// forgetFull forgets the senders whose bucket has refilled by now.
func (r *senderRates) forgetFull(now time.Time) {
	for u, b := range r.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*r.rate >= r.burst {
			delete(r.buckets, u)
		}
	}
}

// storage tells whether stores may go on: not while the database's
// filesystem has less than the reserve left (SQLite, checked every
// spaceCheckEvery), nor for fullBackoff after the database answered that
// it is full (either dialect).
type storage struct {
	db      *sqldb.DB
	minFree atomic.Int64 // < 0: no reserve

	lowSpace  atomic.Bool
	fullUntil atomic.Int64 // unix ns: refuse stores until then
	free      atomic.Int64 // last free bytes seen; -1: not known
	// changed is called when stores stop or resume for want of space.
	changed func(full bool, free int64)
}

const (
	// spaceCheckEvery is how often the free space is read.
	spaceCheckEvery = time.Second
	// fullBackoff is how long stores are refused after the database
	// answered that it is full, before one is tried again.
	fullBackoff = 2 * time.Second
)

func newStorage(db *sqldb.DB, minFree int64, changed func(full bool, free int64)) *storage {
	st := &storage{db: db, changed: changed}
	st.minFree.Store(minFree)
	st.free.Store(-1)
	st.check()
	return st
}

// full reports whether stores are refused now.
func (st *storage) full() bool {
	return st.lowSpace.Load() || time.Now().UnixNano() < st.fullUntil.Load()
}

// sawFull records that the database answered it is full.
func (st *storage) sawFull() {
	st.fullUntil.Store(time.Now().Add(fullBackoff).UnixNano())
}

// check reads the free space (one statfs: the writers call it after each
// batch, so that a fast sender cannot eat into the reserve between two
// ticks of watch).
func (st *storage) check() {
	free, ok := st.db.FreeBytes()
	if !ok {
		return
	}
	f := int64(min(free, math.MaxInt64))
	st.free.Store(f)
	minFree := st.minFree.Load()
	low := minFree >= 0 && free < uint64(minFree)
	if st.lowSpace.Swap(low) != low {
		st.changed(low, f)
	}
}

// freeBytes is the free space as a metric: NaN when not known.
func (st *storage) freeBytes() float64 {
	if f := st.free.Load(); f >= 0 {
		return float64(f)
	}
	return math.NaN()
}

// watch checks the free space every spaceCheckEvery until ctx ends (it
// comes back while no stores arrive).
func (st *storage) watch(ctx context.Context) {
	if _, ok := st.db.FreeBytes(); !ok {
		return
	}
	every(ctx, spaceCheckEvery, st.check)
}
