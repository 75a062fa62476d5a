// Package natsreq sends NATS requests without a goroutine per request and
// keeps them alive across a lost NATS node or a lost service instance.
//
// A Requester holds one subscription on <inbox prefix>.<requester id>.* and
// a table of the calls in flight, each with its own reply subject (the last
// token names the call). Replies are matched on the subscription's delivery
// goroutine; one timer goroutine watches every deadline (a heap, not a timer
// per call).
//
// Each call has an overall deadline (CallOpts.Timeout, 5 s by default) and,
// when it is idempotent, short attempts: an attempt not answered within
// AttemptTimeout (300 ms by default, doubling on each attempt) is sent again,
// up to MaxAttempts; the last attempt waits for the overall deadline.
// A reply to any attempt of a call answers it; a reply to a call that has
// finished is dropped and counted in Stats.Late.
//
// Two events re-send an idempotent call before its attempt times out:
//
//   - a reconnect (the owner calls Reconnected from the connection's
//     reconnect handler): every call whose last attempt went out on the lost
//     connection is sent again at once, because its request or its reply may
//     have died with that connection;
//   - a no-responders status (503: nobody subscribes to the subject, e.g. a
//     service restarting): the call is sent again after a short backoff with
//     jitter, until its deadline; it then fails with an error wrapping
//     nats.ErrNoResponders.
//
// A call that is not idempotent (CallOpts.Idempotent false: a register, a
// group create) is sent exactly once and waits for its overall deadline; a
// no-responders answer fails it at once.
//
// Errors: every failure to get an answer wraps api.ErrUnavailable together
// with the cause (nats.ErrTimeout, nats.ErrNoResponders, ErrClosed, the
// publish error, or the context's error in Request), so errors.Is works as
// it does for api.Call. A service's answer, including a service error
// carried in micro's error headers, is returned as the *nats.Msg: decoding
// it is the caller's job.
//
// Lock order: Requester.mu, then the nats.Conn's own lock (publishes and
// status checks are made while holding mu, so that a call's data is never
// sent after its done callback has started).
package natsreq

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/backoff"
)

// Defaults for Options fields left zero.
const (
	DefaultAttemptTimeout = 300 * time.Millisecond
	DefaultTimeout        = 5 * time.Second
	DefaultMaxAttempts    = 3
	DefaultBackoff        = 20 * time.Millisecond
	DefaultMaxBackoff     = 250 * time.Millisecond
)

// ErrClosed is the cause of the failure of calls in flight when the
// Requester is closed, and of calls started after.
var ErrClosed = errors.New("natsreq: requester closed")

// Options configure a Requester. Zero fields take the defaults above.
type Options struct {
	// AttemptTimeout is how long the first attempt of an idempotent call
	// waits for a reply before the call is sent again; each later attempt
	// waits twice as long as the one before.
	AttemptTimeout time.Duration
	// Timeout is the overall deadline of a call whose CallOpts.Timeout is 0.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of an idempotent call sent because the
	// one before timed out. Re-sends after a reconnect or a no-responders
	// answer do not count: the attempt they replace was lost.
	MaxAttempts int
	// Backoff is the first pause before a call answered "no responders" is
	// sent again; each pause doubles (with jitter) up to MaxBackoff.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Observe, if set, is called once for every call when it ends, on the
	// goroutine that ends it (see Go), before the call's done. It must not
	// block.
	Observe func(Result)
}

// CallOpts are the options of one call. Zero fields take the Requester's.
type CallOpts struct {
	// Idempotent calls may be sent more than once: the receiver handles a
	// repeat as the first (a store carrying a cid, a fetch, an ack, a
	// lookup, a join, a logout).
	Idempotent bool
	// Timeout is the overall deadline, measured from the start of the call.
	Timeout time.Duration
	// AttemptTimeout and MaxAttempts override the Requester's.
	AttemptTimeout time.Duration
	MaxAttempts    int
	// Header, if not nil, is sent with every attempt.
	Header nats.Header
}

// Outcome says how a call ended.
type Outcome uint8

// Outcomes of a call.
const (
	Replied      Outcome = iota // a reply came (it may carry a service error)
	TimedOut                    // the overall deadline passed without a reply
	NoResponders                // nobody subscribes to the subject
	Failed                      // the request could not be published (connection closed, payload too big)
	Closed                      // the Requester was closed
	Canceled                    // Request's context ended first
)

var outcomeNames = [...]string{"replied", "timeout", "no_responders", "failed", "closed", "canceled"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Result describes a finished call to Options.Observe.
type Result struct {
	Subject  string
	Attempts int // how many times the request was published
	Duration time.Duration
	Outcome  Outcome
}

// Stats are a Requester's counters.
type Stats struct {
	InFlight int    // calls started and not finished
	Late     uint64 // replies that found no call waiting (late, or to a canceled call)
	Resent   uint64 // attempts after the first, for every reason
}

// Requester sends requests over one NATS connection. Build it with New;
// its methods are safe for concurrent use.
type Requester struct {
	nc     *nats.Conn
	opts   Options
	prefix string // "<inbox>.": a reply subject is prefix + call token
	sub    *nats.Subscription
	base   time.Time // the clock: times are durations since base (monotonic)
	seq    atomic.Uint64
	late   atomic.Uint64
	resent atomic.Uint64

	mu     sync.Mutex
	calls  map[uint64]*call
	heap   callHeap
	epoch  uint64        // reconnects seen through Reconnected
	armed  time.Duration // when timer is due; 0: not armed
	timer  *time.Timer
	closed bool

	stop   chan struct{} // closed by Close: the timer goroutine returns
	exited chan struct{} // closed by the timer goroutine
}

// call is one request in flight. Every field but the immutable ones is
// guarded by Requester.mu.
type call struct {
	seq     uint64
	subject string
	reply   string
	data    []byte
	header  nats.Header
	done    func(*nats.Msg, error)

	idempotent bool
	maxTries   int
	start      time.Duration
	deadline   time.Duration

	when     time.Duration   // next event: attempt timeout, end of a backoff or the deadline
	index    int             // in Requester.heap; -1 once removed
	attempts int             // publishes so far
	tries    int             // attempts counted against maxTries
	wait     time.Duration   // the current attempt's timeout
	backoff  backoff.Backoff // the no-responders pauses
	conn     uint64          // the epoch of the connection that carried the last attempt
	backing  bool            // in a no-responders pause: no attempt outstanding
	noResp   bool            // the last answer was no-responders
}

// New subscribes to a fresh inbox on nc (its prefix is the connection's
// inbox prefix, nats.CustomInboxPrefix) and starts the timer goroutine.
// Call Close when done, before draining or closing nc. For re-sends after a
// reconnect, call Reconnected from nc's reconnect handler.
func New(nc *nats.Conn, opts Options) (*Requester, error) {
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = DefaultAttemptTimeout
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.Backoff)
	r := &Requester{
		nc:     nc,
		opts:   opts,
		prefix: nc.NewInbox() + ".",
		base:   time.Now(),
		calls:  make(map[uint64]*call),
		timer:  time.NewTimer(time.Hour),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	r.timer.Stop()
	sub, err := nc.Subscribe(r.prefix+"*", r.deliver)
	if err != nil {
		return nil, fmt.Errorf("natsreq: subscribe %s*: %w", r.prefix, err)
	}
	r.sub = sub
	go r.run()
	return r, nil
}

// Go sends data to subject and calls done once with the reply or the
// error. If Go returns an error, the call did not start and done is never
// called. done may be nil.
//
// done runs on one of the Requester's goroutines: the subscription's
// delivery goroutine for a reply or a no-responders answer, the timer
// goroutine for a timeout, the caller of Reconnected or Close for a call
// that fails there. The done functions of different calls may run at the
// same time. done must not block: replies and timeouts of other calls
// wait for it. It may call Go.
//
// data and opts.Header belong to the Requester until done is called (they
// are sent again on a retry): do not change them before.
func (r *Requester) Go(subject string, data []byte, opts CallOpts, done func(*nats.Msg, error)) error {
	_, err := r.start(subject, data, opts, done)
	return err
}

// start starts a call and returns its sequence number.
func (r *Requester) start(subject string, data []byte, opts CallOpts, done func(*nats.Msg, error)) (uint64, error) {
	now := r.now()
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = r.opts.Timeout
	}
	seq := r.seq.Add(1)
	c := &call{
		seq:        seq,
		subject:    subject,
		reply:      r.replySubject(seq),
		data:       data,
		header:     opts.Header,
		done:       done,
		idempotent: opts.Idempotent,
		maxTries:   1,
		start:      now,
		deadline:   now + timeout,
		index:      -1,
		wait:       timeout,
		backoff:    backoff.New(r.opts.Backoff, r.opts.MaxBackoff),
	}
	if opts.Idempotent {
		c.maxTries = r.opts.MaxAttempts
		if opts.MaxAttempts > 0 {
			c.maxTries = opts.MaxAttempts
		}
		c.wait = r.opts.AttemptTimeout
		if opts.AttemptTimeout > 0 {
			c.wait = opts.AttemptTimeout
		}
	}
	c.tries = 1

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.observe(c, Closed, now)
		return 0, wrapErr(c.subject, ErrClosed)
	}
	r.calls[seq] = c
	err := r.send(c, now)
	if err != nil {
		r.remove(c)
		r.mu.Unlock()
		r.observe(c, Failed, r.now())
		return 0, wrapErr(c.subject, err)
	}
	r.mu.Unlock()
	return seq, nil
}

// replySubject is the reply subject of call seq: the prefix and seq in
// base 36.
func (r *Requester) replySubject(seq uint64) string {
	var b [96]byte
	return string(strconv.AppendUint(append(b[:0], r.prefix...), seq, 36))
}

// send publishes an attempt of c and schedules its next event. A publish
// error that a reconnect may cure (the reconnect buffer full) leaves an
// idempotent c in flight, to be sent again; any other error is returned,
// and c is left for the caller to remove. Requires mu.
func (r *Requester) send(c *call, now time.Duration) error {
	c.attempts++
	if c.attempts > 1 {
		r.resent.Add(1)
	}
	c.backing, c.noResp = false, false
	c.conn = r.epoch
	if !r.nc.IsConnected() {
		c.conn++ // buffered for the next connection
	}
	var err error
	if c.header != nil {
		err = r.nc.PublishMsg(&nats.Msg{Subject: c.subject, Reply: c.reply, Header: c.header, Data: c.data})
	} else {
		err = r.nc.PublishRequest(c.subject, c.reply, c.data)
	}
	if c.idempotent && errors.Is(err, nats.ErrReconnectBufExceeded) {
		c.conn = r.epoch // not buffered: Reconnected sends it
	} else if err != nil {
		return err
	}
	r.schedule(c, c.attemptEnd(now))
	return nil
}

// attemptEnd is when the attempt sent at now stops waiting: its timeout if
// another attempt may follow, else the deadline.
func (c *call) attemptEnd(now time.Duration) time.Duration {
	if c.tries >= c.maxTries {
		return c.deadline
	}
	return min(now+c.wait, c.deadline)
}

// schedule sets c's next event to when and arms the timer if that is
// sooner than it is armed for. Requires mu.
func (r *Requester) schedule(c *call, when time.Duration) {
	c.when = when
	if c.index < 0 {
		r.heap.push(c)
	} else {
		r.heap.fix(c.index)
	}
	r.arm(when)
}

// arm makes the timer fire no later than when. Requires mu.
func (r *Requester) arm(when time.Duration) {
	if r.armed != 0 && r.armed <= when {
		return
	}
	r.armed = when
	r.timer.Reset(when - r.now())
}

// remove takes c out of the table and the heap. Requires mu.
func (r *Requester) remove(c *call) {
	delete(r.calls, c.seq)
	if c.index >= 0 {
		r.heap.remove(c.index)
	}
}

func (r *Requester) now() time.Duration { return time.Since(r.base) }

// deliver handles a message on the inbox: a reply or a no-responders
// status for a call in flight.
func (r *Requester) deliver(m *nats.Msg) {
	tok, ok := strings.CutPrefix(m.Subject, r.prefix)
	if !ok {
		r.late.Add(1)
		return
	}
	seq, err := strconv.ParseUint(tok, 36, 64)
	if err != nil {
		r.late.Add(1)
		return
	}
	noResp := len(m.Data) == 0 && m.Header.Get("Status") == "503"
	r.mu.Lock()
	c := r.calls[seq]
	if c == nil {
		r.mu.Unlock()
		r.late.Add(1)
		return
	}
	now := r.now()
	if noResp && c.idempotent {
		if c.backing {
			r.mu.Unlock() // the answer to an attempt already given up on
			return
		}
		pause := c.backoff.Next()
		if now+pause < c.deadline {
			c.backing, c.noResp = true, true
			r.schedule(c, now+pause)
			r.mu.Unlock()
			return
		}
	}
	r.remove(c)
	r.mu.Unlock()
	if noResp {
		r.observe(c, NoResponders, now)
		r.finish(c, nil, wrapErr(c.subject, nats.ErrNoResponders))
		return
	}
	r.observe(c, Replied, now)
	r.finish(c, m, nil)
}

// ended is a call finished by the timer goroutine, Reconnected or Close.
type ended struct {
	c       *call
	outcome Outcome
	err     error
}

// run is the timer goroutine: it wakes when the earliest event is due.
func (r *Requester) run() {
	defer close(r.exited)
	var out []ended
	for {
		select {
		case <-r.stop:
			return
		case <-r.timer.C:
		}
		out = r.expire(out[:0])
		r.end(out)
		clear(out)
	}
}

// expire handles every event that is due and returns the calls it ended.
func (r *Requester) expire(out []ended) []ended {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.armed = 0
	if r.closed {
		return out
	}
	now := r.now()
	var status nats.Status = -1
	for len(r.heap) > 0 && r.heap[0].when <= now {
		c := r.heap[0]
		if now >= c.deadline {
			r.remove(c)
			if c.noResp {
				out = append(out, ended{c, NoResponders, nats.ErrNoResponders})
			} else {
				out = append(out, ended{c, TimedOut, nats.ErrTimeout})
			}
			continue
		}
		if status < 0 {
			status = r.nc.Status()
		}
		switch {
		case status == nats.CLOSED:
			r.remove(c)
			out = append(out, ended{c, Failed, nats.ErrConnectionClosed})
			continue
		case status != nats.CONNECTED && !c.backing:
			// The attempt is lost with the connection or waits in its
			// reconnect buffer: Reconnected sends it again. Look again
			// after one more attempt timeout in case nobody calls it.
			r.schedule(c, min(now+c.wait, c.deadline))
			continue
		}
		if !c.backing { // the attempt timed out
			c.tries++
			c.wait *= 2
		}
		if err := r.send(c, now); err != nil {
			r.remove(c)
			out = append(out, ended{c, Failed, err})
		}
	}
	if len(r.heap) > 0 {
		r.arm(r.heap[0].when)
	}
	return out
}

// end observes and finishes calls ended outside the delivery path.
func (r *Requester) end(out []ended) {
	now := r.now()
	for _, e := range out {
		r.observe(e.c, e.outcome, now)
		r.finish(e.c, nil, wrapErr(e.c.subject, e.err))
	}
}

// Reconnected sends again, at once, every idempotent call in flight whose
// last attempt went out on a connection that is gone, and every call
// waiting out a no-responders pause. Call it from the connection's
// reconnect handler (nats.go has one per connection: chain it with the
// others), once per reconnect.
func (r *Requester) Reconnected() {
	var out []ended
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.epoch++
	now := r.now()
	for _, c := range r.calls {
		if !c.idempotent || (c.conn >= r.epoch && !c.backing) {
			continue
		}
		if err := r.send(c, now); err != nil {
			r.remove(c)
			out = append(out, ended{c, Failed, err})
		}
	}
	r.mu.Unlock()
	r.end(out)
}

// Close fails every call in flight with an error wrapping ErrClosed (their
// done functions run on the caller's goroutine), stops the timer goroutine
// and unsubscribes. Calls started after fail at once. Close before draining
// or closing the connection.
func (r *Requester) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	out := make([]ended, 0, len(r.calls))
	for _, c := range r.calls {
		out = append(out, ended{c, Closed, ErrClosed})
	}
	clear(r.calls)
	for _, c := range r.heap {
		c.index = -1
	}
	r.heap = nil
	r.timer.Stop()
	r.mu.Unlock()
	close(r.stop)
	<-r.exited
	err := r.sub.Unsubscribe()
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
		err = nil
	}
	r.end(out)
	if err != nil {
		return fmt.Errorf("natsreq: unsubscribe: %w", err)
	}
	return nil
}

// Inbox is the subject the Requester subscribes to (<inbox prefix>.<id>.*):
// the connection needs permission to subscribe to it, and the services to
// publish to it.
func (r *Requester) Inbox() string { return r.prefix + "*" }

// Stats returns the Requester's counters.
func (r *Requester) Stats() Stats {
	r.mu.Lock()
	n := len(r.calls)
	r.mu.Unlock()
	return Stats{InFlight: n, Late: r.late.Load(), Resent: r.resent.Load()}
}

// cancel ends call seq without calling its done, if it is still in flight.
func (r *Requester) cancel(seq uint64) bool {
	r.mu.Lock()
	c := r.calls[seq]
	if c != nil {
		r.remove(c)
	}
	r.mu.Unlock()
	if c != nil {
		r.observe(c, Canceled, r.now())
	}
	return c != nil
}

func (r *Requester) observe(c *call, o Outcome, now time.Duration) {
	if r.opts.Observe != nil {
		r.opts.Observe(Result{Subject: c.subject, Attempts: c.attempts, Duration: now - c.start, Outcome: o})
	}
}

func (r *Requester) finish(c *call, m *nats.Msg, err error) {
	if c.done != nil {
		c.done(m, err)
	}
}

// wrapErr makes cause the error of a call to subject: it wraps
// api.ErrUnavailable too.
func wrapErr(subject string, cause error) error {
	return fmt.Errorf("request %s: %w: %w", subject, api.ErrUnavailable, cause)
}
