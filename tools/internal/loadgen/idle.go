package loadgen

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

const (
	// pingWorkers is how many goroutines ping the idle connections, each
	// a share of them; none is tied to a connection.
	pingWorkers = 8
	// maxPingBatch is how many pings a worker writes before it reads their
	// pongs.
	maxPingBatch = 256
	// pingTick: a worker wakes up at most this often and then sends every
	// ping due by then. Waking up for each ping costs more CPU in the Go
	// scheduler than the ping itself (100,000 connections pinging every 30 s
	// are 3,300 pings/s); a ping a few ms late does not matter.
	pingTick = 20 * time.Millisecond
	// pongTimeout: a ping not answered this long after its batch was
	// written failed.
	pongTimeout = 5 * time.Second
	// fileHeadroom is the open files a run needs besides its connections.
	fileHeadroom = 64
)

// IdleReport is the outcome of the idle workload.
type IdleReport struct {
	Conns         int     `json:"conns"`
	PingIntervalS float64 `json:"ping_interval_s"`
	Concurrency   int     `json:"setup_concurrency"`
	RegisterS     float64 `json:"register_s"` // registering the users, not measured

	// The logins, each on its own new connection.
	ConnectS       float64          `json:"connect_s"`
	Established    int64            `json:"established"`
	LoginsPerSec   float64          `json:"logins_per_s"`
	FailedLogins   int64            `json:"failed_logins"` // connects and logins that failed
	Failures       map[string]int64 `json:"failures,omitempty"`
	LoginLatency   Latency          `json:"login_latency_ms"`   // LOGIN written -> LOGIN_ACK read
	ConnectLatency Latency          `json:"connect_latency_ms"` // TCP connect

	// The idle period: every connection pings every PingIntervalS.
	HeldS         float64          `json:"held_s"`
	Pings         int64            `json:"pings"`
	PingsAnswered int64            `json:"pings_answered"`
	PingsFailed   int64            `json:"pings_failed"`
	PingFailures  map[string]int64 `json:"ping_failures,omitempty"`
	PongLatency   Latency          `json:"pong_latency_ms"` // PING written -> PONG read
	ConnsLost     int64            `json:"conns_lost"`      // connections that broke while idle

	GatewayRSS *RSS    `json:"gateway_rss,omitempty"` // with --gateway-pid
	ClientRSS  *RSS    `json:"client_rss,omitempty"`  // this process
	ClientCPU  float64 `json:"client_cpu_cores"`      // while idle; -1: unknown
	// The server processes' CPU while idle (--server-pids).
	ServerCPU *ServerCPU `json:"server_cpu,omitempty"`
}

// Problems lists what failed, empty for a clean run.
func (r *IdleReport) Problems() []string {
	var p []string
	if n := int64(r.Conns) - r.Established; n > 0 {
		p = append(p, fmt.Sprintf("%d failed logins", n))
	}
	if r.PingsFailed > 0 {
		p = append(p, fmt.Sprintf("%d failed pings", r.PingsFailed))
	}
	if r.ConnsLost > 0 {
		p = append(p, fmt.Sprintf("%d connections lost", r.ConnsLost))
	}
	return p
}

// Idle runs the idle workload: cfg.Conns users are registered (not
// measured), each logs in on its own connection, cfg.SetupConcurrency at a
// time (measured: logins/s and latency), then every connection only pings,
// every cfg.PingInterval, spread evenly, for cfg.Duration. The connections
// have no goroutine of their own: a few workers write the pings due and
// read their pongs, so the tool holds 100,000 connections in little memory.
// Its own resident memory, and the gateway's with cfg.GatewayPID, is read
// before the connections are made, once they are and at the end.
func Idle(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	cfg = cfg.withDefaults()
	var gw *RSS
	m, err := startMassRun(ctx, cfg, cfg.Conns, func() error {
		if cfg.GatewayPID > 0 {
			before, err := readRSS(cfg.GatewayPID)
			if err != nil {
				return fmt.Errorf("gateway pid %d: %w", cfg.GatewayPID, err)
			}
			gw = &RSS{PID: cfg.GatewayPID, Before: before}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer m.close()
	ctx, run, d, meter, accts, stopProgress := m.ctx, m.run, m.d, m.meter, m.accts, m.stopProgress
	ir := &IdleReport{
		Conns:         cfg.Conns,
		PingIntervalS: cfg.PingInterval.Seconds(),
		Concurrency:   cfg.SetupConcurrency,
		RegisterS:     m.registerS,
		GatewayRSS:    gw,
		ClientCPU:     -1,
	}
	r := &Report{Workload: WorkloadIdle, Addrs: cfg.Addrs, RunID: run, SourceAddrs: d.names(), Idle: ir}
	readGatewayRSS := func(dst *int64) {
		n, err := readRSS(cfg.GatewayPID)
		if err != nil {
			log.Warn("gateway memory", "pid", cfg.GatewayPID, "err", err)
		}
		*dst = n
	}
	if gw != nil {
		readGatewayRSS(&gw.Before) // again, after the registrations
	}
	ir.ClientRSS = &RSS{Before: selfRSS()}

	meter.begin("connect", "logged in", cfg.Conns)
	conns, st, took := loginAll(ctx, accts, loginOpts{
		d: d, addrs: cfg.Addrs, concurrency: cfg.SetupConcurrency, meter: meter, log: log,
	})
	defer resetAll(conns)
	ir.ConnectS, ir.Established, ir.FailedLogins = took.Seconds(), st.ok.Load(), st.failed.Load()
	ir.Failures = st.failureReasons()
	ir.LoginLatency, ir.ConnectLatency = st.latencies()
	if took > 0 {
		ir.LoginsPerSec = float64(ir.Established) / took.Seconds()
	}
	if gw != nil {
		readGatewayRSS(&gw.Connected)
		gw.perConn(ir.Established)
	}
	ir.ClientRSS.Connected = selfRSS()
	ir.ClientRSS.perConn(ir.Established)
	log.Debug("bench idle: connected", "conns", ir.Established, "failed", ir.FailedLogins, "took", took)
	if ctx.Err() != nil {
		return stopped(ctx, r)
	}

	meter.begin("idle", "pings answered", 0)
	cpu := newCPUMeter()
	server := startWindowMeter(cfg.ServerPIDs, time.Now())
	ps := newPingStats()
	holdStart := time.Now()
	hold(ctx, live(conns), cfg.PingInterval, cfg.Duration, ps, meter)
	ir.HeldS = time.Since(holdStart).Seconds()
	ir.ClientCPU, _ = cpu.since()
	server.end()
	if ir.ServerCPU, err = server.result("", 0); err != nil {
		log.Warn("server cpu not measured", "err", err)
	}
	ir.Pings, ir.PingsAnswered, ir.PingsFailed = ps.sent.Load(), ps.answered.Load(), ps.failed.Load()
	ir.ConnsLost = ps.lost.Load()
	ir.PingFailures, ir.PongLatency = ps.result()
	if gw != nil {
		readGatewayRSS(&gw.End)
	}
	ir.ClientRSS.End = selfRSS()
	stopProgress()
	if ctx.Err() != nil {
		return stopped(ctx, r)
	}
	r.OK = len(ir.Problems()) == 0
	return r, nil
}

// massRun is the start Idle and Storm share: the open-file limit checked,
// the hard timeout on ctx, a dialer, the step meter with its progress
// line, and the run's users registered.
type massRun struct {
	ctx          context.Context
	cancel       context.CancelFunc
	run          string
	d            *dialer
	meter        *stepMeter
	stopProgress func()
	accts        []account
	registerS    float64 // seconds the registration took
}

// startMassRun starts a run over users users; before, if not nil, runs
// once the file limit is checked. The caller closes it.
func startMassRun(ctx context.Context, cfg Config, users int, before func() error) (*massRun, error) {
	if err := checkFileLimit(users + cfg.SetupConcurrency); err != nil {
		return nil, err
	}
	if before != nil {
		if err := before(); err != nil {
			return nil, err
		}
	}
	m := &massRun{run: newRunID(), d: newDialer(cfg, users+cfg.SetupConcurrency), meter: &stepMeter{}}
	m.ctx, m.cancel = context.WithTimeoutCause(ctx, cfg.hardTimeout(), ErrHardTimeout)
	m.stopProgress = startStepProgress(cfg.Progress, m.meter)
	m.meter.begin("register", "users", users)
	start := time.Now()
	accts, err := registerUsers(m.ctx, m.d, cfg.Addrs, userNames(m.run, users), cfg.Password, cfg.SetupConcurrency, m.meter)
	if err != nil {
		m.close()
		return nil, fmt.Errorf("setup: %w", err)
	}
	m.accts, m.registerS = accts, time.Since(start).Seconds()
	return m, nil
}

// close stops the progress line and cancels the run's context.
func (m *massRun) close() {
	m.stopProgress()
	m.cancel()
}

// stopped marks r as stopped early by ctx and returns it with the reason.
func stopped(ctx context.Context, r *Report) (*Report, error) {
	err := context.Cause(ctx)
	r.Stopped = err.Error()
	return r, fmt.Errorf("bench stopped early: %w", err)
}

// checkFileLimit fails when conns connections would not fit this process's
// open file limit.
func checkFileLimit(conns int) error {
	soft, hard, ok := openFileLimit()
	if !ok || uint64(conns+fileHeadroom) <= soft {
		return nil
	}
	return fmt.Errorf("%d connections need about %d open files, but the limit is %d (hard limit %d): "+
		"raise it (ulimit -n) or connect fewer", conns, conns+fileHeadroom, soft, hard)
}

// pingStats count the pings of an idle period. Safe for concurrent use.
type pingStats struct {
	sent, answered, failed, lost atomic.Int64

	mu       sync.Mutex
	rtt      *hdrhistogram.Histogram // µs
	failures map[string]int64
}

func newPingStats() *pingStats {
	return &pingStats{rtt: hdrhistogram.New(histMin, histMax, histSigFigs), failures: map[string]int64{}}
}

func (ps *pingStats) ok(rtt time.Duration) {
	ps.answered.Add(1)
	ps.mu.Lock()
	ps.rtt.RecordValue(max(rtt.Microseconds(), histMin))
	ps.mu.Unlock()
}

// fail counts a failed ping; c broke with it or not.
func (ps *pingStats) fail(c *leanConn, err error) {
	ps.failed.Add(1)
	if c.dead {
		ps.lost.Add(1)
	}
	ps.mu.Lock()
	ps.failures[failureKind(err)]++
	ps.mu.Unlock()
}

func (ps *pingStats) result() (map[string]int64, Latency) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var f map[string]int64
	if len(ps.failures) > 0 {
		f = ps.failures
	}
	return f, summarize(ps.rtt)
}

// hold keeps conns idle for d: each pings every interval, connection i of
// n first at i/n of an interval, so that the pings are spread evenly.
// pingWorkers goroutines share the connections; each wakes up when its next
// ping is due (at most every pingTick), writes every ping due by then and
// reads their pongs.
func hold(ctx context.Context, conns []*leanConn, interval, d time.Duration, ps *pingStats, m *stepMeter) {
	if len(conns) == 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		return
	}
	sched := pingSchedule{start: time.Now(), interval: interval, n: len(conns)}
	sched.end = sched.start.Add(d)
	workers := min(pingWorkers, len(conns))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { pinger(ctx, conns, sched, w, workers, ps, m) })
	}
	wg.Wait()
	// The pings end before the period does; it lasts d all the same.
	select {
	case <-time.After(time.Until(sched.end)):
	case <-ctx.Done():
	}
}

// pingSchedule says when each of n connections pings.
type pingSchedule struct {
	start, end time.Time
	interval   time.Duration
	n          int
}

// due is when connection i pings for the k-th time (from 0).
func (s pingSchedule) due(i, k int) time.Time {
	offset := time.Duration(int64(s.interval) * int64(i) / int64(s.n))
	return s.start.Add(time.Duration(k)*s.interval + offset)
}

// pingSlot is one ping of a batch.
type pingSlot struct {
	c    *leanConn
	id   int64
	sent time.Time
	err  error
}

// pinger pings connections w, w+workers, w+2*workers, ... on their
// schedule until it ends (or ctx does).
func pinger(ctx context.Context, conns []*leanConn, sched pingSchedule, w, workers int, ps *pingStats, m *stepMeter) {
	s := newScratch()
	batch := make([]pingSlot, 0, maxPingBatch)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	i, k := w, 0 // the next connection to ping, and its round
	var woke time.Time
	for ctx.Err() == nil {
		next := sched.due(i, k)
		if !next.Before(sched.end) {
			return
		}
		if at := woke.Add(pingTick); at.After(next) {
			next = at
		}
		if wait := time.Until(next); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		woke = time.Now()
		batch = batch[:0]
		for len(batch) < maxPingBatch {
			t := sched.due(i, k)
			if t.After(woke) || !t.Before(sched.end) {
				break
			}
			if c := conns[i]; !c.dead {
				batch = append(batch, pingSlot{c: c})
			}
			if i += workers; i >= len(conns) {
				i, k = w, k+1
			}
		}
		pingBatch(s, batch, ps, m)
		if len(batch) == maxPingBatch {
			woke = time.Time{} // more may be due: no pause
		}
	}
}

// pingBatch writes a ping to every connection of batch, then reads their
// pongs.
func pingBatch(s *scratch, batch []pingSlot, ps *pingStats, m *stepMeter) {
	deadline := time.Now().Add(pongTimeout)
	for j := range batch {
		p := &batch[j]
		p.sent = time.Now()
		p.id, p.err = p.c.sendPing(s, deadline)
		ps.sent.Add(1)
	}
	for j := range batch {
		p := &batch[j]
		if p.err == nil {
			p.c.nc.SetReadDeadline(deadline)
			_, p.err = p.c.reply(s, p.id)
		}
		if p.err != nil {
			ps.fail(p.c, p.err)
			m.failed.Add(1)
			continue
		}
		ps.ok(time.Since(p.sent))
		m.done.Add(1)
	}
}
