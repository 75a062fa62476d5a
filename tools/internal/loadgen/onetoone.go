package loadgen

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natter-chat/natter/shared/wire"
)

const errorBackoff = 10 * time.Millisecond // closed loop: pause after a failed send

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

	inbox inbox   // the receiver's acknowledgements
	box   *outbox // reconnect mode: the sender's messages not acknowledged yet
}

// OneToOne runs the one-to-one workload: cfg.Pairs pairs of fresh users,
// each a sender and a receiver on their own connections; the sender sends to
// the receiver in a closed or open loop for warmup + duration, then the run
// waits up to cfg.Drain for what is outstanding, and every message is
// checked.
func OneToOne(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.hardTimeout(), ErrHardTimeout)
	defer cancel()
	o := &oneToOne{cfg: cfg, log: log, chk: NewChecker(), run: newRunID(), msg: strings.Repeat("x", cfg.MsgSize)}
	stray := handlers{stray: o.chk.stray(cfg.Reconnect)}
	specs := make([]userSpec, 0, 2*cfg.Pairs)
	for i := range cfg.Pairs {
		p := &pair{o: o, i: i, conv: o.chk.Conversation(), rcpt: o.chk.Recipient(), wake: make(chan struct{}, 1)}
		o.pairs = append(o.pairs, p)
		// Pair i's sender on address i, its receiver on the next: with
		// two gateways each has senders and receivers (a gateway that
		// dies takes both kinds of sessions with it).
		specs = append(specs,
			userSpec{name: fmt.Sprintf("b%s-%d-s", o.run, i), addr: i, h: stray},
			userSpec{name: fmt.Sprintf("b%s-%d-r", o.run, i), addr: i + 1,
				h: handlers{push: p.onPush, stray: stray.stray}})
	}

	setupStart := time.Now()
	d := newDialer(cfg, 2*cfg.Pairs)
	users, err := connectUsers(ctx, d, cfg.Addrs, specs, cfg.Password, cfg.SetupConcurrency)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	defer closeUsers(users)
	var keep *sessions
	if cfg.Reconnect {
		keep = newSessions(cfg, log, d)
	}
	boxes := make([]*inbox, len(o.pairs))
	for i, p := range o.pairs {
		p.sender, p.receiver = users[2*i], users[2*i+1]
		p.senderID.Store(p.sender.id)
		p.inbox.user = p.receiver
		p.receiver.inbox = &p.inbox
		boxes[i] = &p.inbox
		if keep != nil {
			p.box = keep.outbox(p.sender, p)
		}
	}
	setup := time.Since(setupStart)
	log.Debug("bench setup done", "users", len(users), "took", setup)

	r := &Report{
		Workload:    WorkloadOneToOne,
		Mode:        cfg.Mode,
		Pairs:       cfg.Pairs,
		Addrs:       cfg.Addrs,
		RunID:       o.run,
		SourceAddrs: d.names(),
		SetupS:      setup.Seconds(),
	}
	if cfg.Mode == Open {
		r.Rate = cfg.Rate
	}
	err = runClock(ctx, clocked{
		cfg: cfg, log: log, chk: o.chk, users: users, boxes: boxes, keep: keep,
		send: func(tl timeline, stop <-chan struct{}, wg *sync.WaitGroup) {
			for _, p := range o.pairs {
				if cfg.Mode == Open {
					wg.Go(func() { openLoop(tl, stop, p, p.i, cfg.Pairs, cfg.Rate) })
				} else {
					wg.Go(func() { p.closedLoop(stop) })
				}
			}
		},
	}, r)
	r.FloodLimited = o.flood.Load()
	return r, err
}

// send sends the next message of the pair's conversation (reconnect mode:
// queues it in the sender's outbox) and returns its n.
func (p *pair) send() int64 {
	t := time.Now()
	n := p.conv.Send(t)
	p.outstanding.Add(1)
	if p.box != nil {
		p.box.push(n, t)
		return n
	}
	p.sender.conn().requestChat(func(reqid int64) any { return p.frame(n, t, reqid) },
		func(f *frame, err error) { p.onReply(n, f, err) })
	return n
}

// frame is message n, first sent at t; sent again, it is the same message
// with the same cid.
func (p *pair) frame(n int64, t time.Time, reqid int64) any {
	o := p.o
	return chatFrame{
		MsgID: wire.OneChat, ToID: p.receiver.id, Msg: o.msg, ReqID: reqid,
		CID:   o.run + "-" + strconv.Itoa(p.i) + "-" + strconv.FormatInt(n, 10),
		Bench: benchMeta{Run: o.run, N: n, T: t.UnixNano()},
	}
}

// The pair as its outbox's sender (reconnect mode).

func (p *pair) acked(n int64) { p.conv.Acked(n) }

func (p *pair) gaveUp(n int64) {
	if p.conv.GiveUp(n) {
		p.outstanding.Add(-1)
	}
	p.markSettled(n)
}

// onReply records the server's answer to message n.
func (p *pair) onReply(n int64, f *frame, err error) {
	errno, ok := replyErrno(f, err, &p.o.flood)
	if ok {
		p.conv.Acked(n)
		return
	}
	if p.conv.Failed(n, errno) {
		p.outstanding.Add(-1)
	}
	p.errored.Store(true)
	p.markSettled(n)
}

// replyErrno reads the server's answer to a chat (f, or err when the
// connection failed: ErrnoTransport): ok, or the errno it failed with. A
// refusal for flooding sets flood.
func replyErrno(f *frame, err error, flood *atomic.Bool) (errno int, ok bool) {
	switch {
	case err != nil:
		return ErrnoTransport, false
	case f.Errno == int(wire.OK):
		return 0, true
	case f.Errno == int(wire.Flood):
		flood.Store(true)
	}
	return f.Errno, false
}

// onPush records a message arriving at the receiver; it runs on the
// receiver's reader goroutine. In reconnect mode the receiver drops seqs
// it already processed first, as a real client does.
func (p *pair) onPush(f *pushFrame, at time.Time) {
	reconnect := p.o.cfg.Reconnect
	if reconnect {
		if !p.rcpt.Push(f.Gen, f.Seq) {
			return
		}
	} else {
		p.rcpt.Seq(f.Seq)
	}
	p.inbox.saw(f.Seq)
	if f.MsgID != wire.OneChat || !f.Bench || string(f.Run) != p.o.run || f.ID != p.senderID.Load() {
		p.o.chk.Foreign()
		return
	}
	if reconnect {
		p.rcpt.Delivered(at)
	}
	if p.conv.receivedBytes(f.N, f.Mid, time.Unix(0, f.T), at) {
		p.outstanding.Add(-1)
		p.markSettled(f.N)
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
// the next, until stop is closed or the connection broke (reconnect mode:
// the outbox sends it whatever happens to the connection). A message that
// neither arrives nor fails within cfg.Drain (at least a second) is given
// up on - the checks report it - and the next one goes out.
func (p *pair) closedLoop(stop <-chan struct{}) {
	stall := time.NewTimer(0)
	defer stall.Stop()
	for {
		select {
		case <-stop:
			return
		default:
		}
		if p.broken() {
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

// The pair as an open-loop sender.

func (p *pair) broken() bool { return !p.o.cfg.Reconnect && p.sender.conn().Err() != nil }
func (p *pair) full() bool   { return p.outstanding.Load() >= int64(p.o.cfg.MaxOutstanding) }
func (p *pair) skip()        { p.conv.Skip() }
func (p *pair) sendNext()    { p.send() }
