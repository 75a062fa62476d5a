// Package cursor is the delivery state of one login: which messages of the
// user's inbox have been handed to the connection, in seq order, none
// twice, none skipped. It does no I/O: the session feeds it live pushes
// (Push) and inbox pages it fetched (Step), and does what it answers.
//
// The invariant: Delivered is the highest seq handed out, and every seq up
// to it was handed out once, in order (or was found pruned from the inbox).
// A live push is handed out only if it is exactly Delivered+1; an older one
// is a duplicate; a newer one means a gap (pushes from different offline
// instances can overtake each other; NATS drops messages while a connection
// reconnects), which is filled from the inbox before anything newer. While a
// replay or gap fill runs (Syncing), live pushes are held and released in
// order once the inbox has been read up to them.
package cursor

import (
	"slices"

	"github.com/natter-chat/natter/shared/api"
)

// Next is what the driver of a sync does after a Step.
type Next uint8

const (
	// Done: the sync is over; live pushes are handed out as they come.
	Done Next = iota
	// Fetch the inbox after Delivered and call Step with the page.
	Fetch
	// More is ready: call Step again once the client has taken what was
	// handed out (room in its queue).
	More
)

// Page is a page of the inbox and the inbox's last seq when it was read.
type Page struct {
	Messages []api.InboxMessage
	Last     int64
}

// Cursor is the delivery state of one login. It is not safe for
// concurrent use: the session guards it.
//
// An idle cursor is its delivered seq and a bound; the state of a sync is
// allocated while the sync runs.
type Cursor struct {
	delivered  int64
	maxHeld    int32
	*syncState // nil when not syncing
}

// syncState is the state of a replay or gap fill under way.
type syncState struct {
	held     []api.InboxMessage // live pushes held while syncing
	overflow bool               // held overflowed: the inbox has what was dropped

	page           []api.InboxMessage // the rest of the page being handed out
	more           bool               // the inbox holds more after the page
	fetchedNothing bool               // the last fetch found nothing after Delivered
	last           int64              // the inbox's last seq at the last fetch
	skipped        [2]int64           // the seqs found missing by the last Step (from, to); 0, 0: none
}

// New returns the cursor of a login that starts after seq start (what the
// client already has) and is syncing: the driver calls Step, first with the
// page the login fetched. maxHeld bounds the live pushes held meanwhile.
func New(start int64, maxHeld int) *Cursor {
	return &Cursor{delivered: start, maxHeld: int32(maxHeld), syncState: &syncState{}}
}

// Delivered is the highest seq handed out.
func (c *Cursor) Delivered() int64 { return c.delivered }

// Syncing reports whether a replay or gap fill is under way.
func (c *Cursor) Syncing() bool { return c.syncState != nil }

// Deliver records that the messages up to seq were handed out otherwise
// (in a legacy LOGIN_ACK).
func (c *Cursor) Deliver(seq int64) { c.delivered = max(c.delivered, seq) }

// Ack clamps a client's acknowledgement to what was handed out.
func (c *Cursor) Ack(seq int64) int64 { return min(seq, c.delivered) }

// Push takes a live push. emit says to hand m out now (Delivered is m's
// seq); sync says a gap was found and a sync must start (the driver calls
// Step until Done). Otherwise m was a duplicate, or is held.
func (c *Cursor) Push(m api.InboxMessage) (emit, startSync bool) {
	if c.syncState != nil {
		c.hold(m)
		return false, false
	}
	switch {
	case m.Seq <= c.delivered:
		return false, false
	case m.Seq == c.delivered+1:
		c.delivered = m.Seq
		return true, false
	}
	c.syncState = &syncState{}
	c.hold(m)
	return false, true
}

// Missed records that pushes were dropped before they reached the cursor:
// the sync under way reads the inbox again before it ends.
func (c *Cursor) Missed() {
	if c.syncState != nil {
		c.overflow = true
	}
}

// Resync starts a sync to look in the inbox for pushes that were lost (a
// NATS reconnect). It reports whether one was started (false: one runs).
func (c *Cursor) Resync() bool {
	if c.syncState != nil {
		return false
	}
	c.syncState = &syncState{more: true} // the first Step asks for a fetch
	return true
}

func (c *Cursor) hold(m api.InboxMessage) {
	if len(c.held) >= int(c.maxHeld) {
		c.held, c.overflow = nil, true
	}
	if !c.overflow {
		c.held = append(c.held, m)
	}
}

// Step advances a sync by up to budget messages. in is the page fetched
// after the previous Step said Fetch (nil otherwise). It returns the
// messages to hand out now, in order, and what to do next.
func (c *Cursor) Step(in *Page, budget int) (emit []api.InboxMessage, next Next) {
	if c.syncState == nil {
		return nil, Done
	}
	c.skipped = [2]int64{}
	if in != nil {
		c.page = in.Messages
		c.last = in.Last
		c.fetchedNothing = !hasAfter(in.Messages, c.delivered)
		// A page can be cut short by size: whether there is more is
		// decided by the inbox's last seq, not by the page's length.
		c.more = len(in.Messages) > 0 && in.Messages[len(in.Messages)-1].Seq < in.Last
	}
	for len(c.page) > 0 && len(emit) < budget {
		m := c.page[0]
		c.page = c.page[1:]
		if m.Seq > c.delivered { // seqs an entry was pruned from are passed over
			emit = append(emit, m)
			c.delivered = m.Seq
		}
	}
	if len(c.page) > 0 {
		return emit, More
	}
	c.page = nil
	if c.more {
		c.more = false
		return emit, Fetch
	}
	// The inbox is read: release the held pushes that continue the
	// sequence.
	slices.SortFunc(c.held, func(a, b api.InboxMessage) int { return int(a.Seq - b.Seq) })
	keep := c.held[:0]
	for _, m := range c.held {
		switch {
		case m.Seq <= c.delivered:
		case m.Seq == c.delivered+1 && len(emit) < budget:
			emit = append(emit, m)
			c.delivered = m.Seq
		default:
			keep = append(keep, m)
		}
	}
	clear(c.held[len(keep):])
	c.held = keep
	switch {
	case len(keep) > 0 && keep[0].Seq == c.delivered+1:
		return emit, More // more held pushes continue it, once the client reads
	case len(keep) == 0 && !c.overflow:
		c.syncState = nil
		return emit, Done
	case len(keep) > 0 && c.fetchedNothing && c.last >= keep[0].Seq:
		// Nothing to fetch after Delivered although the inbox reached
		// keep[0] when it was read: the entries in between are gone
		// (pruned). Do not stall the user behind them.
		c.skipped = [2]int64{c.delivered + 1, keep[0].Seq - 1}
		c.delivered = keep[0].Seq - 1
	}
	c.overflow, c.fetchedNothing = false, false
	return emit, Fetch
}

// Skipped reports the seqs the last Step found missing from the inbox
// (from, to), for the log; ok is false when none were.
func (c *Cursor) Skipped() (from, to int64, ok bool) {
	if c.syncState == nil {
		return 0, 0, false
	}
	return c.skipped[0], c.skipped[1], c.skipped[0] != 0
}

func hasAfter(ms []api.InboxMessage, seq int64) bool {
	for _, m := range ms {
		if m.Seq > seq {
			return true
		}
	}
	return false
}
