package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natter-chat/natter/shared/wire"
)

const (
	finalAckWait   = 5 * time.Second
	finalAckTries  = 3
	drainPollEvery = 5 * time.Millisecond
)

// Reasons a run stops early, as the context's cause.
var (
	ErrHardTimeout = errors.New("the run hit its hard timeout")
)

// timeline is a run's clock: warmup from start, the measured window from
// measure to stop, then the drain.
type timeline struct {
	start, measure, stop time.Time
}

func newTimeline(start time.Time, cfg Config) timeline {
	measure := start.Add(cfg.Warmup)
	return timeline{start: start, measure: measure, stop: measure.Add(cfg.Duration)}
}

func (tl timeline) phase(t time.Time) string {
	switch {
	case t.Before(tl.measure):
		return "warmup"
	case t.Before(tl.stop):
		return "measure"
	}
	return "drain"
}

// window is the length of the measured window that actually ran, if
// sending stopped at stopped.
func (tl timeline) window(stopped time.Time) time.Duration {
	if stopped.After(tl.stop) {
		stopped = tl.stop
	}
	return max(stopped.Sub(tl.measure), 0)
}

// clocked is a workload ready to run: its users are logged in, its
// receiving connections are inboxes to acknowledge.
type clocked struct {
	cfg   Config
	log   *slog.Logger
	chk   *Checker
	users []*simUser
	boxes []*inbox
	// keep: reconnect mode's sessions (the senders' outboxes added), nil
	// without.
	keep *sessions
	// send starts the senders on wg for the warmup and the measured window
	// of tl; they return once stop is closed.
	send func(tl timeline, stop <-chan struct{}, wg *sync.WaitGroup)
}

// runClock starts the clock of w: warmup and measured window with the
// senders, receivers' acks and the progress line, then the drain, the checks
// (what has not arrived by then is lost) and the final acks. It fills in the
// timing, rates and checks of r, and returns an error when the run hit its
// hard timeout. When ctx ends otherwise (the caller interrupts the run:
// SIGINT, SIGTERM), sending stops at once and the drain, the checks and the
// final acks still run, bounded by Config.Drain and the final acks' own
// time limit; r.Stopped says so and r.OK has the checks' verdict.
func runClock(ctx context.Context, w clocked, r *Report) error {
	cfg := w.cfg
	tl := newTimeline(time.Now(), cfg)
	w.chk.SetWindow(tl.measure, tl.stop)
	w.chk.SendingFrom(tl.start)
	if h := cfg.hooks; h != nil && h.clockStarted != nil {
		h.clockStarted(w.users)
	}
	keep := w.keep
	var extra func() string
	if keep != nil {
		keep.start(w.users)
		defer keep.stop()
		extra = keep.progress
	}
	stopProgress := startProgress(cfg.Progress, w.chk, tl, extra)
	defer stopProgress()
	cpu := newCPUMeter()

	stopSend := make(chan struct{})
	var senders sync.WaitGroup
	w.send(tl, stopSend, &senders)
	stopAcks := startAcks(w.boxes, cfg.AckInterval)
	defer stopAcks()

	server := startWindowMeter(cfg.ServerPIDs, tl.measure)
	timer := time.NewTimer(time.Until(tl.stop))
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
	}
	close(stopSend)
	senders.Wait()
	sendStopped := time.Now()
	w.chk.SendingUntil(sendStopped)
	r.ClientCPU, _ = cpu.since()
	server.end()

	drainCtx, finalCtx := ctx, ctx
	interrupted := ctx.Err() != nil && !errors.Is(context.Cause(ctx), ErrHardTimeout)
	if interrupted {
		// Fresh deadlines: the drain and the final acks are bounded on
		// their own.
		var cancel context.CancelFunc
		drainCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), cfg.Drain)
		defer cancel()
		finalCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), finalAckTries*finalAckWait)
		defer cancel()
	}
	drain(drainCtx, w.chk, cfg.Drain)
	r.DrainS = time.Since(sendStopped).Seconds()
	if keep != nil {
		keep.stopSending() // what is still in an outbox now stays unanswered
	}
	res := w.chk.Result() // what has not arrived by now is lost
	stopAcks()
	if keep == nil {
		for _, u := range w.users {
			if err := u.conn().Err(); err != nil {
				w.log.Warn("connection broke during the run", "user", u.name, "err", err)
				res.ConnErrors++
				r.ConnsLost++
			}
		}
	}
	r.FinalAckErrors = finalAcks(finalCtx, w.boxes, cfg.SetupConcurrency, keep != nil, w.log)
	stopProgress()
	if keep != nil {
		keep.stop()
		r.ReconnectReport = keep.report(w.chk)
	}

	window := tl.window(sendStopped).Seconds()
	r.WarmupS, r.DurationS, r.Result = cfg.Warmup.Seconds(), window, res
	if window > 0 {
		r.SentPerSec = float64(res.SentInWindow) / window
		r.DeliveredPerSec = float64(res.DeliveredInWindow) / window
	}
	per := "message"
	if r.Workload == WorkloadGroup {
		per = "delivery"
	}
	var err error
	if r.ServerCPU, err = server.result(per, res.DeliveredInWindow); err != nil {
		w.log.Warn("server cpu not measured", "err", err)
	}
	if ctx.Err() != nil {
		r.Stopped = context.Cause(ctx).Error()
		if !interrupted {
			return fmt.Errorf("bench stopped early: %w", context.Cause(ctx))
		}
		r.Stopped = "interrupted (" + r.Stopped + "): sending stopped early"
	}
	r.OK = len(r.Problems()) == 0
	return nil
}

// cpuMeter measures the CPU this process uses, as a share of one core (1.0:
// one core busy), between two readings.
type cpuMeter struct {
	cpu time.Duration
	at  time.Time
	ok  bool
}

func newCPUMeter() cpuMeter {
	cpu, ok := processCPU()
	return cpuMeter{cpu: cpu, at: time.Now(), ok: ok}
}

// since returns the cores used since m was read and a new reading; -1 when
// the CPU time cannot be read.
func (m cpuMeter) since() (cores float64, now cpuMeter) {
	now = newCPUMeter()
	dt := now.at.Sub(m.at)
	if !m.ok || !now.ok || dt <= 0 {
		return -1, now
	}
	return float64(now.cpu-m.cpu) / float64(dt), now
}

// startProgress writes a progress line to w every second until the returned
// stop function is called (startLines); extra, if not nil, adds to the
// line. With w nil it does nothing.
func startProgress(w io.Writer, chk *Checker, tl timeline, extra func() string) (stop func()) {
	prev := chk.Progress()
	return startLines(w, func(now, prevAt time.Time, cores float64) string {
		cur := chk.Progress()
		mid := prevAt.Add(now.Sub(prevAt) / 2) // the phase the second was mostly in
		line := progressLine(now.Sub(tl.start), tl.phase(mid), prev, cur, now.Sub(prevAt), cores)
		if extra != nil {
			line += extra()
		}
		prev = cur
		return line
	})
}

// startLines writes a line to w every second until the returned stop
// function is called (which waits for the writer; calling it again does
// nothing): line gets the time of the tick, that of the one before (at
// first, the start) and the CPU cores the process used in between. With w
// nil it does nothing.
func startLines(w io.Writer, line func(now, prev time.Time, cores float64) string) (stop func()) {
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		prevAt, cpu := time.Now(), newCPUMeter()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				var cores float64
				cores, cpu = cpu.since()
				fmt.Fprintln(w, line(now, prevAt, cores))
				prevAt = now
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}

// drain waits until nothing is outstanding, for d at most.
func drain(ctx context.Context, chk *Checker, d time.Duration) {
	if chk.Pending() == 0 {
		return
	}
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(drainPollEvery)
	defer tick.Stop()
	for chk.Pending() > 0 {
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// inbox is the acknowledgement state of one receiving user: its
// connection's reader goroutine records the highest seq it saw (reconnect
// mode: processed), an ack loop acknowledges it.
type inbox struct {
	user   *simUser     // set before the ack loops start
	maxSeq atomic.Int64 // written by the connection's reader goroutine only
	acked  int64        // highest seq acknowledged, owned by the ack loop, then by the final ack
}

// saw records a push's seq; it runs on the connection's reader goroutine.
func (ib *inbox) saw(seq int64) {
	if seq > ib.maxSeq.Load() {
		ib.maxSeq.Store(seq)
	}
}

// inboxesPerAcker is how many connections one ack goroutine looks after:
// a sweep writes one frame to each connection that got something.
const inboxesPerAcker = 256

// startAcks acknowledges what every inbox got, cumulatively, every interval,
// until the returned stop function is called (which waits for the ack
// goroutines).
func startAcks(boxes []*inbox, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for lo := 0; lo < len(boxes); lo += inboxesPerAcker {
		shard := boxes[lo:min(lo+inboxesPerAcker, len(boxes))]
		wg.Go(func() {
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
				}
				for _, ib := range shard {
					// A lost connection's session comes back with
					// lastseq: the server takes it as acknowledged.
					seq := ib.maxSeq.Load()
					if c := ib.user.live(); seq > ib.acked && c != nil {
						if c.send(ackFrame{MsgID: wire.Ack, Seq: seq}) == nil {
							ib.acked = seq
						}
					}
				}
			}
		})
	}
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}

// finalAcks sends every inbox's last ack with a reqid and waits until the
// gateway confirms it is stored, concurrency at a time. It returns how many
// could not be confirmed. reconnect: sessions come back; a final ack waits
// for its session and is tried again on the next connection.
func finalAcks(ctx context.Context, boxes []*inbox, concurrency int, reconnect bool, log *slog.Logger) int64 {
	var failed atomic.Int64
	parallel(ctx, len(boxes), concurrency, func(ctx context.Context, i int) error {
		ack := boxes[i].finalAck
		if reconnect {
			ack = boxes[i].finalAckAgain
		}
		if err := ack(ctx); err != nil {
			log.Warn("final ack", "user", boxes[i].user.name, "err", err)
			failed.Add(1)
		}
		return nil
	})
	return failed.Load()
}

func (ib *inbox) finalAck(ctx context.Context) error {
	seq := ib.maxSeq.Load()
	c := ib.user.conn()
	if seq == 0 || seq <= ib.acked && c.Err() != nil {
		return nil // nothing to acknowledge, or nothing we can do about it
	}
	var err error
	for range finalAckTries {
		actx, cancel := context.WithTimeout(ctx, finalAckWait)
		_, err = c.call(actx, func(id int64) any {
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
	ib.acked = seq
	return nil
}

// finalAckAgain is finalAck in reconnect mode: each try waits for the
// user's session (up to finalAckWait in all) and a lost connection is
// tried again on the next one.
func (ib *inbox) finalAckAgain(ctx context.Context) error {
	seq := ib.maxSeq.Load()
	if seq == 0 {
		return nil
	}
	var err error
	downUntil := time.Now().Add(finalAckWait) // a session down waits this long in all
	for range finalAckTries {
		actx, cancel := context.WithTimeout(ctx, finalAckWait)
		c := ib.user.waitLive(actx, downUntil)
		if c == nil {
			err = errors.New("the session is down")
		} else {
			_, err = c.call(actx, func(id int64) any {
				return ackFrame{MsgID: wire.Ack, Seq: seq, ReqID: id}
			})
		}
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("ack seq %d: %w", seq, err)
	}
	ib.acked = seq
	return nil
}

// paced is a sender an open loop drives.
type paced interface {
	broken() bool // its connection broke: the loop ends
	full() bool   // too many of its messages are outstanding: the next one is skipped
	skip()        // count a skipped message
	sendNext()    // send the next message
}

// openLoop sends sender k of senders its share of rate messages per second
// on a fixed schedule from the start of the warmup until tl.stop (or until
// stop is closed or the connection broke), whatever arrives. A scheduled
// message is skipped while s is full. When the loop falls behind its
// schedule, it catches up at once.
func openLoop(tl timeline, stop <-chan struct{}, s paced, k, senders int, rate float64) {
	interval := time.Duration(float64(time.Second) * float64(senders) / rate)
	interval = max(interval, time.Microsecond)
	// Spread the senders over one interval so they do not send in lockstep.
	next := tl.start.Add(interval * time.Duration(k) / time.Duration(senders))
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for next.Before(tl.stop) {
		select {
		case <-stop:
			return
		case <-timer.C:
		}
		if s.broken() {
			return
		}
		due := int64(time.Since(next)/interval) + 1
		for i := range due {
			if !next.Add(time.Duration(i) * interval).Before(tl.stop) {
				break
			}
			if s.full() {
				s.skip()
				continue
			}
			s.sendNext()
		}
		next = next.Add(time.Duration(due) * interval)
		timer.Reset(time.Until(next))
	}
}
