package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/shared/faultproxy"
)

// chatFrames matches the client frames that carry a chat (and only them).
const chatFrames = `"cid":`

// newProxy is a fault proxy in front of addr whose cuts wait until every
// connection has had its login reply (a cut that took a resume's own reply
// would leave its client with a token the server has already rotated, and
// the client would have to log in with its password).
func newProxy(t *testing.T, addr string) *faultproxy.Proxy {
	p := faultproxy.New(t, addr)
	p.SettleOn(`"token":"`)
	return p
}

// faultConfig is a run through p of workload with --reconnect (or not).
func faultConfig(p *faultproxy.Proxy, workload string, reconnect bool) Config {
	cfg := testConfig(p.Addr())
	cfg.Reconnect = reconnect
	// Long enough for the cuts on a loaded machine, where a closed loop
	// sends a few dozen messages a second (a cut waits for every
	// connection's login reply and then for its share of messages).
	cfg.Duration = 3 * time.Second
	if workload == WorkloadGroup {
		cfg.Workload = WorkloadGroup
		cfg.Groups, cfg.Members, cfg.Senders = 2, 4, 2
		cfg.Rate = 100
	}
	return cfg
}

// runFaultBench runs cfg and logs its reports; the JSON report must decode
// into a Report again.
func runFaultBench(t *testing.T, cfg Config) *Report {
	t.Helper()
	r := runBench(t, cfg)
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	t.Logf("JSON report:\n%s", js.String())
	var m map[string]any
	if err := json.Unmarshal(js.Bytes(), &m); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	_, hasOutage := m["outage_ms"]
	if hasOutage != cfg.Reconnect {
		t.Errorf("JSON report has outage_ms: %v, want %v", hasOutage, cfg.Reconnect)
	}
	return r
}

// Every connection is cut three times during the run: with --reconnect
// the sessions come back, the senders resend, and nothing is lost,
// doubled or reordered; without, the run fails.
func TestReconnectThroughCuts(t *testing.T) {
	addr := startSystem(t, func(c *gateway.Config) { c.FloodRate, c.FloodBurst = 1e5, 1e5 })
	const cuts = 3
	for _, workload := range []string{WorkloadOneToOne, WorkloadGroup} {
		t.Run(workload, func(t *testing.T) {
			p := newProxy(t, addr)
			cfg := faultConfig(p, workload, true)
			every := 20 // chat frames between cuts: few, so that a slow machine gets through them
			if workload == WorkloadGroup {
				every = 25
			}
			p.CutEvery(chatFrames, every, cuts)
			r := runFaultBench(t, cfg)
			if got := p.Taken(); got != cuts {
				t.Fatalf("the proxy cut %d times, want %d (too few messages?)", got, cuts)
			}
			if !r.OK || r.Lost != 0 || r.Duplicates != 0 || r.Reordered != 0 || r.SeqErrors != 0 || r.GivenUp != 0 {
				t.Fatalf("checks failed: %v", r.Problems())
			}
			rr := r.ReconnectReport
			if rr == nil {
				t.Fatal("no reconnect report")
			}
			if rr.Reconnects < cuts || rr.Outage.Count < cuts || rr.Outage.Max <= 0 || rr.Resumed != rr.Reconnects {
				t.Fatalf("reconnects %d, resumed %d, outages %+v: want at least %d, all resumed",
					rr.Reconnects, rr.Resumed, rr.Outage, cuts)
			}
			if rr.PasswordRelogins != 0 || rr.TokensRefused != 0 || rr.DownAtEnd != 0 {
				t.Fatalf("password relogins %d, tokens refused %d, down at the end %d",
					rr.PasswordRelogins, rr.TokensRefused, rr.DownAtEnd)
			}
			if r.Unanswered != 0 || r.SendErrors != 0 || r.Acked != r.Sent {
				t.Fatalf("sent %d, acknowledged %d, send errors %d, unanswered %d: want every message acknowledged",
					r.Sent, r.Acked, r.SendErrors, r.Unanswered)
			}
			want := r.Acked
			if workload == WorkloadGroup {
				want *= int64(cfg.Members - 1)
			}
			if r.Delivered != want {
				t.Fatalf("delivered %d, want %d", r.Delivered, want)
			}
			if rr.Resent == 0 {
				t.Errorf("nothing resent after %d cuts", cuts)
			}
			if rr.MaxReceiveGapMS <= 0 {
				t.Errorf("max receive gap %.3f ms", rr.MaxReceiveGapMS)
			}
			if r.FinalAckErrors != 0 {
				t.Errorf("final ack errors %d", r.FinalAckErrors)
			}
		})
	}
}

func TestNoReconnectCutFails(t *testing.T) {
	addr := startSystem(t, func(c *gateway.Config) { c.FloodRate, c.FloodBurst = 1e5, 1e5 })
	for _, workload := range []string{WorkloadOneToOne, WorkloadGroup} {
		t.Run(workload, func(t *testing.T) {
			p := newProxy(t, addr)
			p.CutEvery(chatFrames, 25, 3)
			r := runFaultBench(t, faultConfig(p, workload, false))
			if p.Taken() == 0 {
				t.Fatal("the proxy never cut")
			}
			if r.OK || r.ConnsLost == 0 || !slices.ContainsFunc(r.Problems(), func(s string) bool {
				return strings.Contains(s, "connections lost")
			}) {
				t.Fatalf("ok %v, conns lost %d, problems %v: want the run failed for the lost connections",
					r.OK, r.ConnsLost, r.Problems())
			}
			if r.ReconnectReport != nil {
				t.Errorf("a reconnect report without --reconnect")
			}
		})
	}
}

// A resume token the server refuses (here: made up) falls back to the
// password, and the report says so.
func TestReconnectRefusedToken(t *testing.T) {
	addr := startSystem(t, func(c *gateway.Config) { c.FloodRate, c.FloodBurst = 1e5, 1e5 })
	p := newProxy(t, addr)
	p.CutEvery(chatFrames, 20, 1)
	cfg := faultConfig(p, WorkloadOneToOne, true)
	cfg.hooks = &testHooks{clockStarted: func(users []*simUser) {
		for _, u := range users {
			u.token = "not-a-token"
		}
	}}
	r := runFaultBench(t, cfg)
	if !r.OK {
		t.Fatalf("checks failed: %v", r.Problems())
	}
	rr := r.ReconnectReport
	if p.Taken() != 1 || rr.PasswordRelogins == 0 || rr.TokensRefused < rr.PasswordRelogins ||
		rr.Resumed+rr.PasswordRelogins != rr.Reconnects {
		t.Fatalf("cuts %d, reconnects %d, resumed %d, password relogins %d, tokens refused %d",
			p.Taken(), rr.Reconnects, rr.Resumed, rr.PasswordRelogins, rr.TokensRefused)
	}
	var text bytes.Buffer
	r.WriteText(&text)
	if !strings.Contains(text.String(), "refused resume tokens") {
		t.Errorf("the text report does not warn about the refused tokens:\n%s", text.String())
	}
}

// A gateway that goes away for good: the messages waiting are given up
// after --give-up, which fails the run.
func TestReconnectGivesUp(t *testing.T) {
	addr := startSystem(t, func(c *gateway.Config) { c.FloodRate, c.FloodBurst = 1e5, 1e5 })
	p := newProxy(t, addr)
	p.DownAfter(chatFrames, 20)
	cfg := faultConfig(p, WorkloadOneToOne, true)
	cfg.Pairs = 2
	cfg.GiveUp, cfg.ReplyTimeout = time.Second, 500*time.Millisecond
	cfg.Duration, cfg.Drain = 1500*time.Millisecond, 2*time.Second
	r := runFaultBench(t, cfg)
	rr := r.ReconnectReport
	if r.OK || r.GivenUp == 0 || rr.DownAtEnd == 0 || !slices.ContainsFunc(r.Problems(), func(s string) bool {
		return strings.Contains(s, "given up")
	}) {
		t.Fatalf("ok %v, given up %d, down at the end %d, problems %v: want given-up messages to fail the run",
			r.OK, r.GivenUp, rr.DownAtEnd, r.Problems())
	}
	if r.SendErrnos["given up"] != r.GivenUp {
		t.Errorf("send errnos %v, given up %d", r.SendErrnos, r.GivenUp)
	}
	if rr.MaxReceiveGapMS < 500 {
		t.Errorf("max receive gap %.3f ms: the receivers got nothing for the rest of the run", rr.MaxReceiveGapMS)
	}
}

// A run stopped by its caller (SIGINT, SIGTERM in natter bench) still
// drains, checks and reports.
func TestInterruptedRunReports(t *testing.T) {
	addr := startSystem(t, func(c *gateway.Config) { c.FloodRate, c.FloodBurst = 1e5, 1e5 })
	for _, reconnect := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "reconnect"}[reconnect], func(t *testing.T) {
			cfg := testConfig(addr)
			cfg.Reconnect = reconnect
			cfg.Duration, cfg.Timeout = time.Hour, 2*time.Hour
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg.hooks = &testHooks{clockStarted: func([]*simUser) { cancel() }}
			start := time.Now()
			r, err := Run(ctx, cfg, testLogger())
			if err != nil {
				t.Fatalf("bench: %v", err)
			}
			var text bytes.Buffer
			r.WriteText(&text)
			t.Logf("%s", text.String())
			if !strings.Contains(r.Stopped, "interrupted") || !r.OK || !strings.Contains(text.String(), "stopped early") {
				t.Fatalf("stopped %q, ok %v, problems %v", r.Stopped, r.OK, r.Problems())
			}
			if took := time.Since(start); took > 30*time.Second {
				t.Fatalf("took %s", took)
			}
		})
	}
}

// A receiver drops seqs it processed on an earlier connection (a replay
// that overlaps), and counts a seq that does not increase on one
// connection as a seq error.
func TestRecipientPush(t *testing.T) {
	c := NewChecker()
	r := c.Recipient()
	steps := []struct {
		gen, seq int64
		want     bool
	}{
		{1, 1, true},
		{1, 2, true},
		{1, 2, false}, // the same seq again on one connection: a seq error
		{2, 1, false}, // a new connection replays what was processed
		{2, 2, false},
		{2, 3, true},
		{2, 5, true}, // a gap is the checker's business (lost), not the seq check's
		{3, 6, true},
	}
	for i, s := range steps {
		if got := r.Push(s.gen, s.seq); got != s.want {
			t.Fatalf("step %d: Push(%d, %d) = %v, want %v", i, s.gen, s.seq, got, s.want)
		}
	}
	res := c.Result()
	if res.SeqErrors != 1 || res.Redelivered != 2 {
		t.Fatalf("seq errors %d, redelivered %d; want 1, 2", res.SeqErrors, res.Redelivered)
	}
}

// A frame without a reqid about the connection - the gateway stopping, a
// msgid this tool does not know (a lame-duck notice) - answers no request.
func TestConnNoticesAnswerNoRequest(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	strays := make(chan int, 8)
	d := &dialer{}
	c := &conn{nc: client, gen: d.conns.Add(1), done: make(chan struct{}), pending: map[int64]waiting{},
		h: handlers{stray: func(f *frame) { strays <- f.Errno }}}
	go c.readLoop()
	defer c.close()
	replies := make(chan *frame, 1)
	go func() { // net.Pipe: the write waits for the server side to read
		c.request(func(id int64) any { return pingFrame{MsgID: 11, ReqID: id} },
			func(f *frame, err error) { replies <- f })
	}()
	buf := make([]byte, 512)
	if _, err := server.Read(buf); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{
		`{"errmsg":"gateway is shutting down; reconnect","errno":113,"msgid":22}`, // RECONNECT
		`{"msgid":99,"errno":118,"errmsg":"something new","addr":"10.0.0.2:6000"}`,
		`{"msgid":14,"errno":113,"errmsg":"gateway is shutting down; reconnect"}`,
		`{"msgid":98,"hint":"something new"}`,
		`{"msgid":12,"reqid":1}`,
	} {
		if _, err := server.Write([]byte(f + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case f := <-replies:
		if f == nil || f.MsgID != 12 {
			t.Fatalf("reply %+v, want the PONG", f)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reply")
	}
	if n := len(strays); n != 3 {
		t.Fatalf("%d stray error frames, want 3", n)
	}
}

// The receive gap: between deliveries while sending, and from the last
// delivery to the end of sending.
func TestReceiveGap(t *testing.T) {
	c := NewChecker()
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	c.SendingFrom(t0)
	busy, idle := c.Recipient(), c.Recipient()
	busy.Delivered(ms(10))
	busy.Delivered(ms(50))
	busy.Delivered(ms(60))
	if g := c.MaxReceiveGap(); g != 40*time.Millisecond {
		t.Fatalf("gap while sending: %s, want 40ms", g)
	}
	c.SendingUntil(ms(100))
	busy.Delivered(ms(400)) // after sending stopped: counts up to the stop
	if g := busy.maxGap.Load(); time.Duration(g) != 40*time.Millisecond {
		t.Fatalf("gap across the end of sending: %s, want 40ms", time.Duration(g))
	}
	if g := c.MaxReceiveGap(); g != 100*time.Millisecond { // idle got nothing while sending
		t.Fatalf("max gap %s, want 100ms", g)
	}
	idle.Delivered(ms(90))
	if g := c.MaxReceiveGap(); g != 90*time.Millisecond {
		t.Fatalf("max gap %s, want 90ms", g)
	}
}
