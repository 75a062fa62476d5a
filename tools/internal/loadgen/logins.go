package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/natter-chat/natter/shared/wire"
)

const (
	regFloodRetries = 100                   // a registration refused with errno 109 is tried again this often
	regFloodBackoff = 20 * time.Millisecond // after an errno 109
	loggedFailures  = 5                     // failed logins logged at warn level; the rest at debug
)

// account is a registered simulated user of a connection workload.
type account struct {
	id       int64
	password string
	token    string // the resume token of its last password login (resume-storm)
}

// userNames returns n user names unique to the run.
func userNames(run string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "b" + run + "-c" + strconv.Itoa(i)
	}
	return names
}

// registerUsers registers a user for every name and returns their accounts.
// concurrency connections register their share in turn (a gateway handles
// one connection's requests one at a time); each is closed at the end. A
// registration refused for flooding (errno 109: the gateway's default flood
// limit) is tried again; any other failure ends the setup.
func registerUsers(ctx context.Context, d *dialer, addrs, names []string, password string,
	concurrency int, m *stepMeter) ([]account, error) {
	accts := make([]account, len(names))
	par := min(concurrency, len(names))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for w := range par {
		wg.Go(func() {
			c, err := dialLean(ctx, d, addrFor(addrs, w))
			if err != nil {
				cancel(fmt.Errorf("register: %w", err))
				return
			}
			defer c.reset()
			s := newScratch()
			for i := w; i < len(names) && ctx.Err() == nil; i += par {
				id, err := registerOne(ctx, c, s, names[i], password)
				if err != nil {
					cancel(err)
					return
				}
				accts[i] = account{id: id, password: password}
				m.done.Add(1)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	return accts, nil
}

func registerOne(ctx context.Context, c *leanConn, s *scratch, name, password string) (int64, error) {
	for try := 0; ; try++ {
		rctx, cancel := context.WithTimeout(ctx, setupRequestTimeout)
		id, err := c.register(rctx, s, name, password)
		cancel()
		var re *ReplyError
		if err == nil || try == regFloodRetries || !errors.As(err, &re) || re.Errno != int(wire.Flood) {
			return id, err
		}
		select {
		case <-time.After(regFloodBackoff):
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
	}
}

// loginStats are the outcome of a storm of logins, each on a new
// connection. Safe for concurrent use.
type loginStats struct {
	ok, failed atomic.Int64

	mu       sync.Mutex
	login    *hdrhistogram.Histogram // LOGIN written -> LOGIN_ACK read, µs
	connect  *hdrhistogram.Histogram // TCP connect, µs
	failures map[string]int64        // by failureKind
	logged   int
}

func newLoginStats() *loginStats {
	return &loginStats{
		login:    hdrhistogram.New(histMin, histMax, histSigFigs),
		connect:  hdrhistogram.New(histMin, histMax, histSigFigs),
		failures: map[string]int64{},
	}
}

func (st *loginStats) succeeded(connect, login time.Duration) {
	st.ok.Add(1)
	st.mu.Lock()
	st.connect.RecordValue(max(connect.Microseconds(), histMin))
	st.login.RecordValue(max(login.Microseconds(), histMin))
	st.mu.Unlock()
}

func (st *loginStats) fail(log *slog.Logger, step string, err error) {
	st.failed.Add(1)
	kind := step + ": " + failureKind(err)
	st.mu.Lock()
	st.failures[kind]++
	st.logged++
	detail := st.logged <= loggedFailures
	st.mu.Unlock()
	if detail {
		log.Warn("login failed", "step", step, "err", err)
	} else {
		log.Debug("login failed", "step", step, "err", err)
	}
}

// failureReasons returns the failures by kind (nil: none).
func (st *loginStats) failureReasons() map[string]int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.failures) == 0 {
		return nil
	}
	return maps.Clone(st.failures)
}

func (st *loginStats) latencies() (login, connect Latency) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return summarize(st.login), summarize(st.connect)
}

// failureKind names why a connect or a login failed, for counting.
func failureKind(err error) string {
	var re *ReplyError
	switch {
	case errors.As(err, &re):
		return "errno " + strconv.Itoa(re.Errno)
	case errors.Is(err, errTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port (more --source-addrs)"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files (ulimit -n)"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF):
		return "closed by the server"
	}
	return "transport"
}

// loginOpts says how loginAll logs the accounts in.
type loginOpts struct {
	d           *dialer
	addrs       []string
	concurrency int
	useToken    bool // log in with each account's resume token instead of its password
	keepToken   bool // store the resume token of each LOGIN_ACK in the account
	meter       *stepMeter
	log         *slog.Logger
}

// loginAll logs every account in on a new connection, o.concurrency at a
// time, and returns the connections (nil where the connect or the login
// failed: counted in the stats, which never stops the storm), the stats
// and how long it took. Only ctx ending stops it early.
func loginAll(ctx context.Context, accts []account, o loginOpts) ([]*leanConn, *loginStats, time.Duration) {
	conns := make([]*leanConn, len(accts))
	st := newLoginStats()
	start := time.Now()
	parallelWith(ctx, len(accts), o.concurrency, newScratch, func(ctx context.Context, s *scratch, i int) error {
		conns[i] = loginOne(ctx, s, &accts[i], o, addrFor(o.addrs, i), st)
		if conns[i] == nil && ctx.Err() == nil {
			o.meter.failed.Add(1)
		} else if conns[i] != nil {
			o.meter.done.Add(1)
		}
		return nil
	})
	return conns, st, time.Since(start)
}

func loginOne(ctx context.Context, s *scratch, a *account, o loginOpts, addr string, st *loginStats) *leanConn {
	t0 := time.Now()
	c, err := dialLean(ctx, o.d, addr)
	if err != nil {
		if ctx.Err() == nil {
			st.fail(o.log, "connect", err)
		}
		return nil
	}
	t1 := time.Now()
	rctx, cancel := context.WithTimeout(ctx, setupRequestTimeout)
	defer cancel()
	token := ""
	if o.useToken {
		token = a.token
	}
	ack, err := c.login(rctx, s, a.id, a.password, token)
	t2 := time.Now()
	if err == nil && o.keepToken {
		if ack.Token == "" {
			err = fmt.Errorf("login %d: no resume token in the LOGIN_ACK (a server without sessions?)", a.id)
		}
		a.token = ack.Token
	}
	if err != nil {
		c.reset()
		if ctx.Err() == nil {
			st.fail(o.log, "login", err)
		}
		return nil
	}
	st.succeeded(t1.Sub(t0), t2.Sub(t1))
	return c
}

// resetAll resets every connection (nil entries are skipped) at once.
func resetAll(conns []*leanConn) {
	for _, c := range conns {
		if c != nil && !c.dead {
			c.reset()
		}
	}
}

// live returns the connections that are up.
func live(conns []*leanConn) []*leanConn {
	out := make([]*leanConn, 0, len(conns))
	for _, c := range conns {
		if c != nil && !c.dead {
			out = append(out, c)
		}
	}
	return out
}

// stepMeter counts the steps of the phase a connection workload is in,
// for the progress line.
type stepMeter struct {
	done, failed atomic.Int64

	mu    sync.Mutex
	phase string
	unit  string // what a step is, for the line
	total int64  // 0: open-ended
}

func (m *stepMeter) begin(phase, unit string, total int) {
	m.mu.Lock()
	m.phase, m.unit, m.total = phase, unit, int64(total)
	m.done.Store(0)
	m.failed.Store(0)
	m.mu.Unlock()
}

type stepSnapshot struct {
	phase, unit         string
	total, done, failed int64
}

func (m *stepMeter) snapshot() stepSnapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return stepSnapshot{phase: m.phase, unit: m.unit, total: m.total, done: m.done.Load(), failed: m.failed.Load()}
}

// startStepProgress writes a progress line about m to w every second until
// the returned stop function is called (startLines). With w nil it does
// nothing.
func startStepProgress(w io.Writer, m *stepMeter) (stop func()) {
	start, prev := time.Now(), m.snapshot()
	return startLines(w, func(now, prevAt time.Time, cores float64) string {
		cur := m.snapshot()
		line := stepLine(now.Sub(start), prev, cur, now.Sub(prevAt), cores)
		prev = cur
		return line
	})
}

// stepLine formats one progress line of a connection workload from two
// snapshots dt apart.
func stepLine(elapsed time.Duration, prev, cur stepSnapshot, dt time.Duration, cores float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "bench %4ds %-12s", int(elapsed.Round(time.Second)/time.Second), cur.phase)
	if cur.total > 0 {
		fmt.Fprintf(&b, " %8d/%d %s", cur.done, cur.total, cur.unit)
	} else {
		fmt.Fprintf(&b, " %8d %s", cur.done, cur.unit)
	}
	delta := cur.done
	if prev.phase == cur.phase {
		delta -= prev.done
	}
	fmt.Fprintf(&b, "  %8.0f/s  failed %d", float64(delta)/dt.Seconds(), cur.failed)
	if cores >= 0 {
		fmt.Fprintf(&b, "  cpu %3.0f%%", 100*cores)
	}
	return b.String()
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]int64) []string {
	return slices.Sorted(maps.Keys(m))
}
