package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natter-chat/natter/shared/wire"
)

const (
	errorBackoff   = 10 * time.Millisecond // closed loop: pause after a failed send
	finalAckWait   = 5 * time.Second
	finalAckTries  = 3
	drainPollEvery = 5 * time.Millisecond
)

// oneToOne is a one-to-one run in progress.
type oneToOne struct {
	cfg   Config
	log   *slog.Logger
	chk   *Checker
	run   string
	msg   string
	pairs []*pair
	flood atomic.Bool // some send got errno 109
}

// pair is one sender and one receiver: a conversation.
type pair struct {
	o        *oneToOne
	i        int
	sender   *simUser
	receiver *simUser
	senderID atomic.Int64 // read on the receiver's reader goroutine
	conv     *Conversation
	rcpt     *Recipient

	outstanding atomic.Int64  // sent and not settled (arrived or failed)
	settled     atomic.Int64  // highest n settled (closed loop)
	errored     atomic.Bool   // a send failed since the sender last looked (closed loop)
	wake        chan struct{} // capacity 1: something settled

	maxSeq atomic.Int64 // highest seq received, written by the receiver's reader goroutine
	acked  int64        // highest seq acknowledged, owned by the ack loop, then by the final ack
}

// OneToOne runs the one-to-one workload: cfg.Pairs pairs of fresh users,
// each a sender and a receiver on their own connections; the sender sends to
// the receiver in a closed or open loop for warmup + duration, then the run
// waits up to cfg.Drain for what is outstanding, and every message is
// checked.
func OneToOne(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.hardTimeout(), ErrHardTimeout)
	defer cancel()
	o := &oneToOne{cfg: cfg, log: log, chk: NewChecker(), run: newRunID(), msg: strings.Repeat("x", cfg.MsgSize)}
	stray := handlers{stray: func(*frame) { o.chk.ConnError() }}
	specs := make([]userSpec, 0, 2*cfg.Pairs)
	for i := range cfg.Pairs {
		p := &pair{o: o, i: i, conv: o.chk.Conversation(), rcpt: o.chk.Recipient(), wake: make(chan struct{}, 1)}
		o.pairs = append(o.pairs, p)
		specs = append(specs,
			userSpec{name: fmt.Sprintf("b%s-%d-s", o.run, i), addr: addrFor(cfg.Addrs, 2*i), h: stray},
			userSpec{name: fmt.Sprintf("b%s-%d-r", o.run, i), addr: addrFor(cfg.Addrs, 2*i+1),
				h: handlers{push: p.onPush, stray: stray.stray}})
	}

	setupStart := time.Now()
	users, err := connectUsers(ctx, specs, cfg.Password, cfg.SetupConcurrency)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	defer closeUsers(users)
	for i, p := range o.pairs {
		p.sender, p.receiver = users[2*i], users[2*i+1]
		p.senderID.Store(p.sender.id)
	}
	setup := time.Since(setupStart)
	log.Debug("bench setup done", "users", len(users), "took", setup)

	tl := newTimeline(time.Now(), cfg)
	o.chk.SetWindow(tl.measure, tl.stop)
	stopProgress := startProgress(cfg.Progress, o.chk, tl)
	defer stopProgress()

	stopSend := make(chan struct{})
	var senders sync.WaitGroup
	for _, p := range o.pairs {
		if cfg.Mode == Open {
			senders.Go(func() { p.openLoop(tl, stopSend) })
		} else {
			senders.Go(func() { p.closedLoop(stopSend) })
		}
	}
	stopAcks := make(chan struct{})
	var acker sync.WaitGroup
	acker.Go(func() { o.ackLoop(stopAcks) })

	timer := time.NewTimer(time.Until(tl.stop))
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
	}
	close(stopSend)
	senders.Wait()
	sendStopped := time.Now()

	o.drain(ctx)
	drained := time.Since(sendStopped)
	res := o.chk.Result() // what has not arrived by now is lost
	close(stopAcks)
	acker.Wait()
	for _, u := range users {
		if err := u.conn.Err(); err != nil {
			log.Warn("connection broke during the run", "user", u.name, "err", err)
			res.ConnErrors++
		}
	}
	finalAckErrors := o.finalAcks(ctx)
	stopProgress()

	window := tl.window(sendStopped).Seconds()
	r := &Report{
		Workload:       WorkloadOneToOne,
		Mode:           cfg.Mode,
		Pairs:          cfg.Pairs,
		Addrs:          cfg.Addrs,
		RunID:          o.run,
		WarmupS:        cfg.Warmup.Seconds(),
		DurationS:      window,
		SetupS:         setup.Seconds(),
		DrainS:         drained.Seconds(),
		Result:         res,
		FinalAckErrors: finalAckErrors,
		FloodLimited:   o.flood.Load(),
	}
	if cfg.Mode == Open {
		r.Rate = cfg.Rate
	}
	if window > 0 {
		r.SentPerSec = float64(res.SentInWindow) / window
		r.DeliveredPerSec = float64(res.DeliveredInWindow) / window
	}
	if ctx.Err() != nil {
		err := context.Cause(ctx)
		r.Stopped = err.Error()
		return r, fmt.Errorf("bench stopped early: %w", err)
	}
	r.OK = res.Clean()
	return r, nil
}

// drain waits until nothing is outstanding, for cfg.Drain at most.
func (o *oneToOne) drain(ctx context.Context) {
	if o.chk.Pending() == 0 {
		return
	}
	deadline := time.NewTimer(o.cfg.Drain)
	defer deadline.Stop()
	tick := time.NewTicker(drainPollEvery)
	defer tick.Stop()
	for o.chk.Pending() > 0 {
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// ackLoop acknowledges what every receiver got, every cfg.AckInterval,
// until stop is closed.
func (o *oneToOne) ackLoop(stop <-chan struct{}) {
	t := time.NewTicker(o.cfg.AckInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for _, p := range o.pairs {
			seq := p.maxSeq.Load()
			if seq > p.acked && p.receiver.conn.Err() == nil {
				if p.receiver.conn.send(ackFrame{MsgID: wire.Ack, Seq: seq}) == nil {
					p.acked = seq
				}
			}
		}
	}
}

// finalAcks sends every receiver's last ack with a reqid and waits until the
// gateway confirms it is stored. It returns how many could not be
// confirmed.
func (o *oneToOne) finalAcks(ctx context.Context) int64 {
	var failed atomic.Int64
	parallel(ctx, len(o.pairs), o.cfg.SetupConcurrency, func(ctx context.Context, i int) error {
		if err := o.pairs[i].finalAck(ctx); err != nil {
			o.log.Warn("final ack", "user", o.pairs[i].receiver.name, "err", err)
			failed.Add(1)
		}
		return nil
	})
	return failed.Load()
}

func (p *pair) finalAck(ctx context.Context) error {
	seq := p.maxSeq.Load()
	if seq == 0 || seq <= p.acked && p.receiver.conn.Err() != nil {
		return nil // nothing to acknowledge, or nothing we can do about it
	}
	var err error
	for range finalAckTries {
		actx, cancel := context.WithTimeout(ctx, finalAckWait)
		_, err = p.receiver.conn.call(actx, func(id int64) any {
			return ackFrame{MsgID: wire.Ack, Seq: seq, ReqID: id}
		})
		cancel()
		var re *ReplyError
		if err == nil || !errors.As(err, &re) || re.Errno != int(wire.Flood) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("ack seq %d: %w", seq, err)
	}
	p.acked = seq
	return nil
}

// send sends the next message of the pair's conversation and returns its n.
func (p *pair) send() int64 {
	o := p.o
	t := time.Now()
	n := p.conv.Send(t)
	p.outstanding.Add(1)
	to := p.receiver.id
	p.sender.conn.request(func(reqid int64) any {
		return chatFrame{
			MsgID: wire.OneChat, ToID: to, Msg: o.msg, ReqID: reqid,
			CID:   o.run + "-" + strconv.Itoa(p.i) + "-" + strconv.FormatInt(n, 10),
			Bench: benchMeta{Run: o.run, N: n, T: t.UnixNano()},
		}
	}, func(f *frame, err error) { p.onReply(n, f, err) })
	return n
}

// onReply records the server's answer to message n.
func (p *pair) onReply(n int64, f *frame, err error) {
	errno := ErrnoTransport
	if err == nil {
		if f.Errno == int(wire.OK) {
			p.conv.Acked(n)
			return
		}
		errno = f.Errno
		if errno == int(wire.Flood) {
			p.o.flood.Store(true)
		}
	}
	if p.conv.Failed(n, errno) {
		p.outstanding.Add(-1)
	}
	p.errored.Store(true)
	p.markSettled(n)
}

// onPush records a message arriving at the receiver; it runs on the
// receiver's reader goroutine.
func (p *pair) onPush(f *frame, at time.Time) {
	p.rcpt.Seq(f.Seq)
	if f.Seq > p.maxSeq.Load() {
		p.maxSeq.Store(f.Seq)
	}
	b := f.Bench
	if b == nil || b.Run != p.o.run || f.ID != p.senderID.Load() {
		p.o.chk.Foreign()
		return
	}
	if p.conv.Received(b.N, f.Mid, time.Unix(0, b.T), at) {
		p.outstanding.Add(-1)
		p.markSettled(b.N)
	}
}

func (p *pair) markSettled(n int64) {
	for {
		cur := p.settled.Load()
		if n <= cur || p.settled.CompareAndSwap(cur, n) {
			break
		}
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// closedLoop sends a message, waits until it arrived (or failed), and sends
// the next, until stop is closed or the connection broke. A message that neither arrives nor fails
// within cfg.Drain (at least a second) is given up on - the checks report
// it - and the next one goes out.
func (p *pair) closedLoop(stop <-chan struct{}) {
	stall := time.NewTimer(0)
	defer stall.Stop()
	for {
		select {
		case <-stop:
			return
		default:
		}
		if p.sender.conn.Err() != nil {
			return // the connection broke: its sends failed and are counted
		}
		n := p.send()
		stall.Reset(max(p.o.cfg.Drain, time.Second))
	wait:
		for p.settled.Load() < n {
			select {
			case <-p.wake:
			case <-stall.C:
				break wait
			case <-stop:
				return
			}
		}
		if p.errored.Swap(false) {
			select {
			case <-time.After(errorBackoff):
			case <-stop:
				return
			}
		}
	}
}

// openLoop sends the pair's share of cfg.Rate on a fixed schedule from the
// start of the warmup until tl.stop (or until the connection broke),
// whatever arrives. A scheduled message is
// skipped when cfg.MaxOutstanding are already outstanding. When the loop
// falls behind its schedule, it catches up at once.
func (p *pair) openLoop(tl timeline, stop <-chan struct{}) {
	cfg := p.o.cfg
	interval := time.Duration(float64(time.Second) * float64(cfg.Pairs) / cfg.Rate)
	interval = max(interval, time.Microsecond)
	// Spread the pairs over one interval so they do not send in lockstep.
	next := tl.start.Add(interval * time.Duration(p.i) / time.Duration(cfg.Pairs))
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for next.Before(tl.stop) {
		select {
		case <-stop:
			return
		case <-timer.C:
		}
		if p.sender.conn.Err() != nil {
			return
		}
		due := int64(time.Since(next)/interval) + 1
		for k := range due {
			if !next.Add(time.Duration(k) * interval).Before(tl.stop) {
				break
			}
			if p.outstanding.Load() >= int64(cfg.MaxOutstanding) {
				p.conv.Skip()
				continue
			}
			p.send()
		}
		next = next.Add(time.Duration(due) * interval)
		timer.Reset(time.Until(next))
	}
}
