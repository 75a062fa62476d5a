package loadgen

import (
	"hash/maphash"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histogram range: 1 µs .. 60 s, 3 significant figures.
const (
	histMin     = 1
	histMax     = 60_000_000
	histSigFigs = 3
)

// ErrnoTransport is the errno recorded for a send that failed without an
// answer from the server: the connection broke or the write failed.
const ErrnoTransport = -1

// ErrnoGivenUp is the errno recorded for a message a sender gave up on
// (reconnect mode: not acknowledged within Config.GiveUp).
const ErrnoGivenUp = -2

// Checker does the delivery accounting of a run. Senders number each
// conversation's messages (Conversation.Send), record the server's answer
// (Acked or Failed) and receivers record arrivals (Received). At the end,
// Result says what was lost (acknowledged by the server, never received),
// duplicated (the same n or the same mid twice), reordered (an n lower than
// one already received) and how fast and how late everything arrived.
//
// A GroupConversation is the same accounting for one sender's messages to a
// group: every message is expected once at each of its recipients, and a
// delivery (message x recipient) counts where a one-to-one message does.
//
// A Checker is safe for concurrent use. Its lock is held only for a few
// counter updates per call, never while a frame is read or parsed.
type Checker struct {
	mu       sync.Mutex
	seed     maphash.Seed
	start    time.Time // measured window [start, end); zero: everything counts
	end      time.Time
	convs    []*Conversation
	groups   []*GroupConversation
	all      *hdrhistogram.Histogram // every delivery
	measured *hdrhistogram.Histogram // deliveries of messages sent in the window
	// Group messages: send -> receipt by the last recipient, of every
	// message and of those sent in the window.
	lastAll, lastMeasured *hdrhistogram.Histogram
	n                     counts
	errnos                map[int]int64
	recipients            []*Recipient

	// The senders' sending time, for the receive gaps (unix ns; 0: not
	// started, not stopped).
	sendFrom, sendUntil atomic.Int64
}

// counts are the Checker's running totals.
type counts struct {
	sent, skipped, acked, failed, delivered int64
	duplicates, reordered, unexpected       int64
	seqErrors, foreign, connErrors          int64
	givenUp, redelivered, notices           int64
	sentInWindow, deliveredInWindow         int64
	unreplied                               int64 // sent, neither acknowledged nor failed yet
	undelivered                             int64 // acknowledged, not received yet
}

// NewChecker returns an empty Checker.
func NewChecker() *Checker {
	return &Checker{
		seed:     maphash.MakeSeed(),
		all:      hdrhistogram.New(histMin, histMax, histSigFigs),
		measured: hdrhistogram.New(histMin, histMax, histSigFigs),
		errnos:   map[int]int64{},

		lastAll:      hdrhistogram.New(histMin, histMax, histSigFigs),
		lastMeasured: hdrhistogram.New(histMin, histMax, histSigFigs),
	}
}

// SetWindow sets the measured window: only messages sent in [start, end)
// count in the latency figures, and only arrivals in it in the delivery
// rate. Messages outside it are checked all the same.
func (c *Checker) SetWindow(start, end time.Time) {
	c.mu.Lock()
	c.start, c.end = start, end
	c.mu.Unlock()
}

func (c *Checker) inWindow(t time.Time) bool {
	if c.start.IsZero() {
		return true
	}
	return !t.Before(c.start) && t.Before(c.end)
}

// msgState is what is known about one message.
type msgState uint8

const (
	stAcked    msgState = 1 << iota // the server stored it (reply errno 0)
	stFailed                        // the send failed (errno != 0, or the connection broke)
	stReceived                      // it arrived
	stSettled                       // it stopped counting as outstanding for the sender
)

// Conversation is one sender-to-receiver stream of messages numbered
// n = 1, 2, ... in send order.
type Conversation struct {
	c       *Checker
	msgs    []msgState // index n-1
	maxRecv int64
	mids    map[uint64]struct{} // hashes of the mids received
}

// Conversation starts the accounting of a new stream.
func (c *Checker) Conversation() *Conversation {
	cv := &Conversation{c: c, mids: map[uint64]struct{}{}}
	c.mu.Lock()
	c.convs = append(c.convs, cv)
	c.mu.Unlock()
	return cv
}

// Send numbers the next message, sent at t, and returns its n. Call it
// before the frame goes out: the reply or the message may come back before
// the write returns.
func (cv *Conversation) Send(t time.Time) int64 {
	c := cv.c
	c.mu.Lock()
	defer c.mu.Unlock()
	cv.msgs = append(cv.msgs, 0)
	c.sentLocked(t)
	return int64(len(cv.msgs))
}

// Skip counts a message an open-loop sender could not send because too many
// were outstanding. A skipped message was never sent: it is not lost.
func (cv *Conversation) Skip() { cv.c.skip() }

// sentLocked counts a message sent at t. Call with c.mu held.
func (c *Checker) sentLocked(t time.Time) {
	c.n.sent++
	c.n.unreplied++
	if c.inWindow(t) {
		c.n.sentInWindow++
	}
}

// skip counts a message that was never sent.
func (c *Checker) skip() {
	c.mu.Lock()
	c.n.skipped++
	c.mu.Unlock()
}

// Acked records the server's successful reply for message n.
func (cv *Conversation) Acked(n int64) {
	c := cv.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := cv.state(n); c.replyLocked(st, stAcked, 0) && *st&stReceived == 0 {
		c.n.undelivered++
	}
}

// Failed records that sending message n failed with errno (ErrnoTransport
// when the connection broke). A failed message is a send error, not lost. It
// reports whether n stopped being outstanding now.
func (cv *Conversation) Failed(n int64, errno int) (settled bool) {
	c := cv.c
	c.mu.Lock()
	defer c.mu.Unlock()
	st := cv.state(n)
	return c.replyLocked(st, stFailed, errno) && cv.settle(st)
}

// GiveUp records that the sender gave up on message n (reconnect mode:
// the server never acknowledged it in time). Like a send error, it is not
// lost, but it fails the run. It reports whether n stopped being
// outstanding now.
func (cv *Conversation) GiveUp(n int64) (settled bool) {
	cv.c.givenUp()
	return cv.Failed(n, ErrnoGivenUp)
}

// replyLocked records the reply to a message whose state is st (nil: no
// such message): stAcked, or stFailed with errno. False: the reply was
// unexpected (no such message, or it had its reply already). c.mu is
// held.
func (c *Checker) replyLocked(st *msgState, reply msgState, errno int) bool {
	if st == nil || *st&(stAcked|stFailed) != 0 {
		c.n.unexpected++
		return false
	}
	*st |= reply
	c.n.unreplied--
	if reply == stAcked {
		c.n.acked++
	} else {
		c.n.failed++
		c.errnos[errno]++
	}
	return true
}

// givenUp counts a message the sender gave up on.
func (c *Checker) givenUp() {
	c.mu.Lock()
	c.n.givenUp++
	c.mu.Unlock()
}

// Received records the arrival at time at of message n, sent at sentAt, with
// server id mid. It reports whether n stopped being outstanding now (false
// for a duplicate).
func (cv *Conversation) Received(n int64, mid string, sentAt, at time.Time) (settled bool) {
	return cv.received(n, maphash.String(cv.c.seed, mid), mid != "", sentAt, at)
}

// receivedBytes is Received for a mid that aliases a frame buffer.
func (cv *Conversation) receivedBytes(n int64, mid []byte, sentAt, at time.Time) (settled bool) {
	return cv.received(n, maphash.Bytes(cv.c.seed, mid), len(mid) > 0, sentAt, at)
}

func (cv *Conversation) received(n int64, h uint64, hasMid bool, sentAt, at time.Time) (settled bool) {
	c := cv.c
	c.mu.Lock()
	defer c.mu.Unlock()
	st := cv.state(n)
	if st == nil {
		c.n.unexpected++
		return false
	}
	_, seen := cv.mids[h]
	if *st&stReceived != 0 || (hasMid && seen) {
		c.n.duplicates++
		return false
	}
	if hasMid {
		cv.mids[h] = struct{}{}
	}
	*st |= stReceived
	c.n.delivered++
	if *st&stAcked != 0 {
		c.n.undelivered--
	}
	if n < cv.maxRecv {
		c.n.reordered++
	} else {
		cv.maxRecv = n
	}
	c.recordDelivery(sentAt, at)
	return cv.settle(st)
}

// recordDelivery records one arrival's latency and rate; c.mu is held.
func (c *Checker) recordDelivery(sentAt, at time.Time) {
	us := latencyUS(sentAt, at)
	c.all.RecordValue(us)
	if c.inWindow(sentAt) {
		c.measured.RecordValue(us)
	}
	if c.inWindow(at) {
		c.n.deliveredInWindow++
	}
}

func latencyUS(sentAt, at time.Time) int64 {
	return min(max(at.Sub(sentAt).Microseconds(), histMin), histMax)
}

func (cv *Conversation) state(n int64) *msgState {
	if n < 1 || n > int64(len(cv.msgs)) {
		return nil
	}
	return &cv.msgs[n-1]
}

func (cv *Conversation) settle(st *msgState) bool { return settle(st) }

// settle marks a message no longer outstanding for its sender and reports
// whether it was until now.
func settle(st *msgState) bool {
	if *st&stSettled != 0 {
		return false
	}
	*st |= stSettled
	return true
}

// GroupConversation is one sender's messages to a group, numbered
// n = 1, 2, ... in send order. Every message is expected exactly once at
// each recipient (the group's other members, numbered 0..recipients-1 by the
// caller), and at each recipient the n values must increase. A message
// settles for its sender once its last recipient has it (or its send
// failed); that receipt gives its last-member latency.
type GroupConversation struct {
	c          *Checker
	recipients int
	words      int        // bitmap words per message
	msgs       []groupMsg // index n-1
	got        []uint64   // message n's bitmap of recipients that have it: got[(n-1)*words:][:words]
	maxRecv    []int64    // per recipient: the highest n received
}

type groupMsg struct {
	st   msgState // stReceived: every recipient has it
	left int32    // recipients that do not have it yet
}

// state is m's state; nil for no message.
func (m *groupMsg) state() *msgState {
	if m == nil {
		return nil
	}
	return &m.st
}

// GroupConversation starts the accounting of one sender's messages to a
// group with the given number of recipients (the members but the sender).
func (c *Checker) GroupConversation(recipients int) *GroupConversation {
	gc := &GroupConversation{
		c:          c,
		recipients: recipients,
		words:      (recipients + 63) / 64,
		maxRecv:    make([]int64, recipients),
	}
	c.mu.Lock()
	c.groups = append(c.groups, gc)
	c.mu.Unlock()
	return gc
}

// Send numbers the next message, sent at t, and returns its n. Call it
// before the frame goes out.
func (gc *GroupConversation) Send(t time.Time) int64 {
	c := gc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	gc.msgs = append(gc.msgs, groupMsg{left: int32(gc.recipients)})
	k := len(gc.got)
	gc.got = slices.Grow(gc.got, gc.words)[:k+gc.words]
	clear(gc.got[k:])
	c.sentLocked(t)
	return int64(len(gc.msgs))
}

// Skip counts a message an open-loop sender could not send because too many
// were outstanding.
func (gc *GroupConversation) Skip() { gc.c.skip() }

// Acked records the server's successful reply for message n: from now on,
// every recipient that does not have it is waiting for it.
func (gc *GroupConversation) Acked(n int64) {
	c := gc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := gc.msg(n); c.replyLocked(m.state(), stAcked, 0) {
		c.n.undelivered += int64(m.left)
	}
}

// Failed records that sending message n failed with errno; it reports
// whether n stopped being outstanding now.
func (gc *GroupConversation) Failed(n int64, errno int) (settled bool) {
	c := gc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	st := gc.msg(n).state()
	return c.replyLocked(st, stFailed, errno) && settle(st)
}

// GiveUp records that the sender gave up on message n; see
// Conversation.GiveUp.
func (gc *GroupConversation) GiveUp(n int64) (settled bool) {
	gc.c.givenUp()
	return gc.Failed(n, ErrnoGivenUp)
}

// Received records the arrival of message n, sent at sentAt, at recipient r
// at time at. It reports whether n stopped being outstanding now: r was its
// last recipient.
func (gc *GroupConversation) Received(r int, n int64, sentAt, at time.Time) (settled bool) {
	c := gc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	m := gc.msg(n)
	if m == nil || r < 0 || r >= gc.recipients {
		c.n.unexpected++
		return false
	}
	word, bit := &gc.got[int(n-1)*gc.words+r/64], uint64(1)<<(r%64)
	if *word&bit != 0 {
		c.n.duplicates++
		return false
	}
	*word |= bit
	m.left--
	c.n.delivered++
	if m.st&stAcked != 0 {
		c.n.undelivered--
	}
	if n < gc.maxRecv[r] {
		c.n.reordered++
	} else {
		gc.maxRecv[r] = n
	}
	c.recordDelivery(sentAt, at)
	if m.left > 0 {
		return false
	}
	m.st |= stReceived
	us := latencyUS(sentAt, at)
	c.lastAll.RecordValue(us)
	if c.inWindow(sentAt) {
		c.lastMeasured.RecordValue(us)
	}
	return settle(&m.st)
}

func (gc *GroupConversation) msg(n int64) *groupMsg {
	if n < 1 || n > int64(len(gc.msgs)) {
		return nil
	}
	return &gc.msgs[n-1]
}

// missing is how many deliveries of acknowledged messages have not arrived,
// and of how many messages; c.mu is held.
func (gc *GroupConversation) missing() (deliveries, msgs int64) {
	for _, m := range gc.msgs {
		if m.st&stAcked != 0 && m.left > 0 {
			deliveries += int64(m.left)
			msgs++
		}
	}
	return deliveries, msgs
}

// Recipient checks one receiving user: the seq values of the pushes on
// each of its connections must be strictly increasing. It is used by one
// goroutine at a time (its connection's reader; in reconnect mode the
// readers of its connections one after the other).
type Recipient struct {
	c    *Checker
	last int64 // the highest seq seen (Seq) or processed (Push)

	// Push: the connection of the last push and its highest seq.
	gen, connLast int64

	lastAt atomic.Int64 // the last delivery (Delivered), unix ns; 0: none yet
	maxGap atomic.Int64 // the longest time between deliveries while the senders sent, ns
}

// Recipient starts checking a new receiving user.
func (c *Checker) Recipient() *Recipient {
	r := &Recipient{c: c}
	c.mu.Lock()
	c.recipients = append(c.recipients, r)
	c.mu.Unlock()
	return r
}

// Push is Seq for a user whose connections are replaced (reconnect
// mode): it records a push's seq on connection gen and reports whether
// the push is new, to be processed. A seq the user already processed on
// an earlier connection is dropped as a real client drops it (the login
// that replaced the connection overlapped what it had) and counted as
// redelivered; a seq not above the previous one on the same connection is
// a seq error, and dropped too.
func (r *Recipient) Push(gen, seq int64) bool {
	if gen != r.gen {
		r.gen, r.connLast = gen, 0
	}
	if seq <= r.connLast {
		r.c.mu.Lock()
		r.c.n.seqErrors++
		r.c.mu.Unlock()
		return false
	}
	r.connLast = seq
	if seq <= r.last {
		r.c.mu.Lock()
		r.c.n.redelivered++
		r.c.mu.Unlock()
		return false
	}
	r.last = seq
	return true
}

// Delivered records that a message of the run reached the user at time
// at, for the longest gap between deliveries while the senders were
// sending (from the start of sending, or the previous delivery, to this
// one or the end of sending, whichever came first).
func (r *Recipient) Delivered(at time.Time) {
	now := at.UnixNano()
	from := r.lastAt.Load()
	if from == 0 {
		if from = r.c.sendFrom.Load(); from == 0 {
			from = now
		}
	}
	r.lastAt.Store(now)
	end := now
	if until := r.c.sendUntil.Load(); until != 0 {
		end = min(end, until)
	}
	if g := end - from; g > r.maxGap.Load() {
		r.maxGap.Store(g)
	}
}

// SendingFrom and SendingUntil tell the Checker when the senders started
// and stopped, for the receive gaps.
func (c *Checker) SendingFrom(t time.Time)  { c.sendFrom.Store(t.UnixNano()) }
func (c *Checker) SendingUntil(t time.Time) { c.sendUntil.Store(t.UnixNano()) }

// MaxReceiveGap is the longest time a recipient went without a message
// while the senders were sending (Recipient.Delivered): between two
// deliveries, or, once sending stopped, from a recipient's last delivery
// (or the start) to the end of sending.
func (c *Checker) MaxReceiveGap() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	from, until := c.sendFrom.Load(), c.sendUntil.Load()
	var g int64
	for _, r := range c.recipients {
		g = max(g, r.maxGap.Load())
		if last := max(r.lastAt.Load(), from); from != 0 && until != 0 {
			g = max(g, until-last)
		}
	}
	return time.Duration(g)
}

// Seq records a push's seq and reports whether it was in order.
func (r *Recipient) Seq(seq int64) bool {
	if seq > r.last {
		r.last = seq
		return true
	}
	r.c.mu.Lock()
	r.c.n.seqErrors++
	r.c.mu.Unlock()
	return false
}

// Foreign counts a push that belongs to no conversation of this run.
func (c *Checker) Foreign() {
	c.mu.Lock()
	c.n.foreign++
	c.mu.Unlock()
}

// Notice counts an error frame that answered no request (reconnect mode:
// RECONNECT, the gateway stopping, the session expired; the connection
// closes and the session comes back on another).
func (c *Checker) Notice() {
	c.mu.Lock()
	c.n.notices++
	c.mu.Unlock()
}

// ConnError counts an error frame that answered no request of ours (for
// example a dropped ack) or a connection that broke during the run.
func (c *Checker) ConnError() {
	c.mu.Lock()
	c.n.connErrors++
	c.mu.Unlock()
}

// stray returns the handler of error frames that answer no request:
// reconnect mode counts them as notices, else as connection errors.
func (c *Checker) stray(reconnect bool) func(*frame) {
	if reconnect {
		return func(*frame) { c.Notice() }
	}
	return func(*frame) { c.ConnError() }
}

// Pending is how many messages are still in flight: sent without an answer
// yet, or acknowledged and not received yet.
func (c *Checker) Pending() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n.unreplied + c.n.undelivered
}

// Progress is a running snapshot for the progress line.
type Progress struct {
	Sent, Delivered, Pending int64
	P99                      time.Duration // of the measured window once it started, else of everything
}

// Progress returns the running totals.
func (c *Checker) Progress() Progress {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.measured
	if h.TotalCount() == 0 {
		h = c.all
	}
	return Progress{
		Sent:      c.n.sent,
		Delivered: c.n.delivered,
		Pending:   c.n.unreplied + c.n.undelivered,
		P99:       time.Duration(h.ValueAtQuantile(99)) * time.Microsecond,
	}
}

// Result is the outcome of the checks.
type Result struct {
	Sent       int64 `json:"sent"`
	Skipped    int64 `json:"skipped"`
	Acked      int64 `json:"acknowledged"`
	SendErrors int64 `json:"send_errors"`
	Unanswered int64 `json:"unanswered"` // sent, but the server never answered
	Delivered  int64 `json:"delivered"`  // group: deliveries, message x recipient

	Lost         int64 `json:"lost"`                    // acknowledged by the server, never received (group: deliveries)
	LostMessages int64 `json:"lost_messages,omitempty"` // group: acknowledged messages some recipient never received
	Duplicates   int64 `json:"duplicated"`              // the same n or the same mid received again (group: at one recipient)
	Reordered    int64 `json:"reordered"`               // an n lower than one received before it (group: at one recipient)
	Unexpected   int64 `json:"unexpected"`              // an answer or arrival for a message never sent
	GivenUp      int64 `json:"given_up"`                // reconnect: not acknowledged within the give-up time (also send errors)
	Redelivered  int64 `json:"redelivered,omitempty"`   // reconnect: pushes of seqs already processed, dropped by the receiver
	Notices      int64 `json:"notices,omitempty"`       // reconnect: error frames that answered no request (RECONNECT, ...)
	SeqErrors    int64 `json:"seq_errors"`              // a push seq not above the previous one on its connection
	Foreign      int64 `json:"foreign"`                 // a push without this run's bench metadata
	ConnErrors   int64 `json:"conn_errors"`

	SendErrnos map[string]int64 `json:"send_errnos,omitempty"` // errno ("transport" for a broken connection) -> count

	SentInWindow      int64   `json:"sent_measured"`
	DeliveredInWindow int64   `json:"delivered_measured"`
	Latency           Latency `json:"latency_ms"` // of the messages sent in the measured window (group: each delivery)
	// Group: send -> receipt by the last recipient, of the messages sent in
	// the measured window that every recipient got.
	LastMember *Latency `json:"last_member_latency_ms,omitempty"`
}

// Clean reports whether nothing was lost, duplicated, reordered or out of
// sequence, nothing arrived that was never sent and no sender gave up.
func (r Result) Clean() bool {
	return r.Lost == 0 && r.Duplicates == 0 && r.Reordered == 0 && r.Unexpected == 0 && r.SeqErrors == 0 &&
		r.Foreign == 0 && r.GivenUp == 0
}

// Latency summarizes a latency histogram, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

func summarize(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

// Result computes the checks. Call it once nothing more is expected to
// arrive: every acknowledged message not received by then counts as lost.
func (c *Checker) Result() Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Result{
		Sent:              c.n.sent,
		Skipped:           c.n.skipped,
		Acked:             c.n.acked,
		SendErrors:        c.n.failed,
		Unanswered:        c.n.unreplied,
		Delivered:         c.n.delivered,
		Duplicates:        c.n.duplicates,
		Reordered:         c.n.reordered,
		Unexpected:        c.n.unexpected,
		GivenUp:           c.n.givenUp,
		Redelivered:       c.n.redelivered,
		Notices:           c.n.notices,
		SeqErrors:         c.n.seqErrors,
		Foreign:           c.n.foreign,
		ConnErrors:        c.n.connErrors,
		SentInWindow:      c.n.sentInWindow,
		DeliveredInWindow: c.n.deliveredInWindow,
		Latency:           summarize(c.measured),
	}
	for _, cv := range c.convs {
		for _, st := range cv.msgs {
			if st&stAcked != 0 && st&stReceived == 0 {
				r.Lost++
			}
		}
	}
	for _, gc := range c.groups {
		d, m := gc.missing()
		r.Lost += d
		r.LostMessages += m
	}
	if len(c.groups) > 0 {
		l := summarize(c.lastMeasured)
		r.LastMember = &l
	}
	if len(c.errnos) > 0 {
		r.SendErrnos = map[string]int64{}
		for e, k := range c.errnos {
			name := strconv.Itoa(e)
			switch e {
			case ErrnoTransport:
				name = "transport"
			case ErrnoGivenUp:
				name = "given up"
			}
			r.SendErrnos[name] = k
		}
	}
	return r
}
