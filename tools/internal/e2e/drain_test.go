package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/shared/eventually"
)

// drainReceiver is a full-dialect client that logs in on a gateway that
// will drain, then keeps reading on its own goroutine: it acknowledges every
// message, checks that seqs come one after the other, and when the
// connection closes it logs in on the other gateway with its resume token
// and the last seq it saw, as a real client does.
type drainReceiver struct {
	name  string
	id    int64
	token string
	other net.Addr // where it goes when its gateway closes the connection

	mu        sync.Mutex
	conn      net.Conn
	last      int64     // the last seq seen
	reconnect frame     // the RECONNECT frame, if one came
	closedAt  time.Time // when its first connection closed
	resumed   bool      // logged in on the other gateway
	err       error     // the first thing that went wrong
}

func (r *drainReceiver) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
}

func (r *drainReceiver) state() (last int64, resumed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last, r.resumed, r.err
}

func writeFrame(conn net.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = conn.Write(append(b, '\n'))
	return err
}

// loginOn logs in on addr (password, or token when pw is empty) and returns
// the connection, its reader and the LOGIN_ACK.
func (r *drainReceiver) loginOn(addr net.Addr, req frame) (net.Conn, *bufio.Reader, frame, error) {
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		return nil, nil, nil, err
	}
	br := bufio.NewReader(conn)
	if err := writeFrame(conn, req); err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	for {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := br.ReadString('\n')
		if err != nil {
			conn.Close()
			return nil, nil, nil, fmt.Errorf("%s: login on %s: %w", r.name, addr, err)
		}
		var f frame
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			conn.Close()
			return nil, nil, nil, err
		}
		if f.num("msgid") != 2 {
			continue
		}
		if f.num("errno") != 0 {
			conn.Close()
			return nil, nil, nil, fmt.Errorf("%s: login on %s: %v", r.name, addr, f)
		}
		conn.SetReadDeadline(time.Time{})
		return conn, br, f, nil
	}
}

// run reads until the second connection closes (the test's cleanup).
func (r *drainReceiver) run(conn net.Conn, br *bufio.Reader) {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			conn.Close()
			r.mu.Lock()
			resumed, last := r.resumed, r.last
			if !resumed {
				r.closedAt = time.Now()
			}
			r.mu.Unlock()
			if resumed {
				return // the test is over
			}
			// Resume on the other gateway, skipping what was seen.
			nc, nbr, ack, err := r.loginOn(r.other, frame{"msgid": 1, "id": r.id, "token": r.token, "lastseq": last})
			if err != nil {
				r.fail(err)
				return
			}
			if ack.num("lastseq") != last {
				r.fail(fmt.Errorf("%s: resumed at lastseq %d, want %d", r.name, ack.num("lastseq"), last))
			}
			r.mu.Lock()
			r.conn, r.resumed = nc, true
			r.mu.Unlock()
			conn, br = nc, nbr
			continue
		}
		var f frame
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			r.fail(fmt.Errorf("%s: bad frame %q", r.name, line))
			continue
		}
		switch f.num("msgid") {
		case 6:
			seq := f.num("seq")
			r.mu.Lock()
			want := r.last + 1
			if seq == want {
				r.last = seq
			}
			r.mu.Unlock()
			if seq != want {
				r.fail(fmt.Errorf("%s: got seq %d, want %d", r.name, seq, want))
				continue
			}
			if f.str("msg") != fmt.Sprint("m", seq) {
				r.fail(fmt.Errorf("%s: seq %d is %q", r.name, seq, f.str("msg")))
			}
			writeFrame(conn, frame{"msgid": 13, "seq": seq}) // a failure shows as the close
		case 22:
			r.mu.Lock()
			r.reconnect = f
			r.mu.Unlock()
		case 16:
		default:
			r.fail(fmt.Errorf("%s: unexpected %v", r.name, f))
		}
	}
}

// TestGatewayDrain: gateway A drains while its clients receive a steady
// stream from a sender on gateway B. A's readiness fails at once and new
// connections are refused; every full-dialect client is told to reconnect
// and closed, the closes spread over the drain window; each logs in on B
// with its resume token and sees every message exactly once, in order. A
// legacy client is closed without the frame.
func TestGatewayDrain(t *testing.T) {
	const window = 1500 * time.Millisecond
	c := newCluster(t, clusterOpts{floodRate: 100000})
	og := startOpsGateway(t, c, func(cfg *gateway.Config) { cfg.DrainWindow = window })
	a, b := og.g, c.gws[0]

	s := dial(t, b.Addr(), '\n', "sender")
	s.signUp("sender", "pw")

	const n = 6
	var rs []*drainReceiver
	var wg sync.WaitGroup
	for i := range n {
		r := &drainReceiver{name: fmt.Sprint("r", i), other: b.Addr()}
		r.id = s.register(r.name, "pw")
		conn, br, ack, err := r.loginOn(a.Addr(), frame{"msgid": 1, "id": r.id, "password": "pw"})
		if err != nil {
			t.Fatal(err)
		}
		r.token, r.conn = ack.str("token"), conn
		rs = append(rs, r)
		wg.Add(1)
		go func() { defer wg.Done(); r.run(conn, br) }()
	}
	t.Cleanup(func() {
		for _, r := range rs {
			r.mu.Lock()
			r.conn.Close()
			r.mu.Unlock()
		}
		wg.Wait()
	})
	legacy := dial(t, a.Addr(), 0, "legacy")
	lid := s.register("legacy", "pw")
	legacy.login(lid, "pw")

	// The stream: one message to each receiver in turn, each stored before
	// the next is sent; the drain starts after a while.
	sent := make([]int64, n)
	send := func() {
		for i, r := range rs {
			sent[i]++
			s.send(frame{"msgid": 6, "toid": r.id, "msg": fmt.Sprint("m", sent[i]), "reqid": sent[i]})
			if f := s.expect(14); f.num("errno") != 0 {
				t.Fatalf("send: %v", f)
			}
		}
	}
	for range 20 {
		send()
	}
	drainStart := time.Now()
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		drained <- a.Drain(ctx)
	}()
	eventually.NoError(t, 5*time.Second, func() error {
		if !errors.Is(a.Ready(context.Background()), gateway.ErrDraining) {
			return errors.New("A ready during the drain")
		}
		return nil
	})
	eventually.NoError(t, 5*time.Second, func() error {
		conn, err := net.Dial("tcp", a.Addr().String())
		if err == nil {
			conn.Close()
		}
		if err == nil {
			return errors.New("A accepts connections during the drain")
		}
		return nil
	})

	// Keep the stream going until every receiver is back, and a while after.
	allResumed := func() bool {
		for _, r := range rs {
			if _, resumed, _ := r.state(); !resumed {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(20 * time.Second); !allResumed(); {
		if time.Now().After(deadline) {
			t.Fatal("receivers did not all come back on B")
		}
		send()
	}
	for range 10 {
		send()
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}

	for i, r := range rs {
		eventually.NoError(t, 10*time.Second, func() error {
			last, _, err := r.state()
			if !(last == sent[i] || err != nil) {
				return fmt.Errorf("%s: did not see all %d messages", r.name, sent[i])
			}
			return nil
		})
		r.mu.Lock()
		err, rf, closedAt := r.err, r.reconnect, r.closedAt
		r.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if rf.num("errno") != 113 || !strings.Contains(rf.str("errmsg"), "reconnect") {
			t.Errorf("%s: reconnect frame %v, want msgid 22 errno 113", r.name, rf)
		}
		if d := closedAt.Sub(drainStart); d > window+5*time.Second {
			t.Errorf("%s: closed %v after the drain began (window %v)", r.name, d, window)
		}
	}
	// The closes are spread: timers never fire early, so the last close
	// cannot come before its slot, well into the window.
	var lastClose time.Time
	for _, r := range rs {
		r.mu.Lock()
		if r.closedAt.After(lastClose) {
			lastClose = r.closedAt
		}
		r.mu.Unlock()
	}
	if d := lastClose.Sub(drainStart); d < window/2 {
		t.Errorf("the last connection closed %v after the drain began: not spread over the %v window", d, window)
	}
	// The legacy client was closed without a frame it does not know.
	if got, err := legacy.recvRaw(5 * time.Second); err == nil {
		t.Errorf("legacy client got %q, want the connection closed", got)
	}
	// The receivers leave B (their acks are handed over as their sessions
	// end): every message was acknowledged, none is left for a later login.
	for _, r := range rs {
		r.mu.Lock()
		r.conn.Close()
		r.mu.Unlock()
	}
	wg.Wait()
	for i, r := range rs {
		eventually.NoError(t, 5*time.Second, func() error {
			x := dial(t, b.Addr(), '\n', r.name+"-check")
			defer x.conn.Close()
			x.send(frame{"msgid": 1, "id": r.id, "password": "pw", "reqid": "chk"})
			f := x.expect(2)
			if !(f.num("lastseq") == sent[i] && f.num("pending") == 0) {
				return fmt.Errorf("%s: messages left unacknowledged", r.name)
			}
			return nil
		})
	}
}
