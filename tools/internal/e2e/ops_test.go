package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/shared/eventually"
)

// TestGatewayMetrics: after logins and a chat, the gateway's /metrics shows
// its connections, logins, frames, pushes, service requests and delivery
// latency; /readyz follows the gateway's Ready.
func TestGatewayMetrics(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	og := startOpsGateway(t, c, func(cfg *gateway.Config) { cfg.DrainWindow = 200 * time.Millisecond })
	if code, body := og.get(t, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz: %d %s", code, body)
	}

	a := dial(t, og.g.Addr(), '\n', "a")
	b := dial(t, og.g.Addr(), '\n', "b")
	aid, bid := a.signUpWithPeer("alice", "bob", "pw")
	b.login(bid, "pw")
	a.send(chat(bid, "hi"))
	a.expect(14)
	b.expect(6)
	b.send(frame{"msgid": 13, "seq": 1, "reqid": "k"})
	b.expect(14)
	b.send(frame{"msgid": 1, "id": bid, "password": "wrong"}) // on a live session: refused
	b.expect(2)
	x := dial(t, og.g.Addr(), '\n', "x")
	x.send(frame{"msgid": 1, "id": aid, "password": "wrong"})
	if f := x.expect(2); f.num("errno") != 1 {
		t.Fatalf("wrong password: %v", f)
	}
	x.conn.Close()

	want := map[string]float64{
		`natter_gateway_connections`:                                                                    2,
		`natter_gateway_sessions`:                                                                       2,
		`natter_gateway_connections_accepted_total`:                                                     3,
		`natter_gateway_connections_closed_total{reason="eof"}`:                                         1,
		`natter_gateway_logins_total{method="password",result="ok"}`:                                    2,
		`natter_gateway_logins_total{method="password",result="invalid"}`:                               2,
		`natter_gateway_frames_in_total{msgid="reg"}`:                                                   2,
		`natter_gateway_frames_in_total{msgid="login"}`:                                                 4,
		`natter_gateway_frames_in_total{msgid="one_chat"}`:                                              1,
		`natter_gateway_frames_in_total{msgid="ack"}`:                                                   1,
		`natter_gateway_frames_out_total{msgid="login_ack"}`:                                            4,
		`natter_gateway_frames_out_total{msgid="one_chat"}`:                                             1,
		`natter_gateway_frames_out_total{msgid="reply"}`:                                                2,
		`natter_gateway_messages_pushed_total`:                                                          1,
		`natter_gateway_acks_forwarded_total`:                                                           1,
		`natter_gateway_delivery_latency_seconds_count`:                                                 1,
		`natter_gateway_service_request_seconds_count{endpoint="store",service="offline"}`:              1,
		`natter_gateway_service_request_seconds_count{endpoint="login",service="user"}`:                 3,
		`natter_gateway_service_request_errors_total{code="bad_login",endpoint="login",service="user"}`: 1,
	}
	var m map[string]float64
	eventually.NoError(t, 5*time.Second, func() error {
		m = og.metrics(t)
		for k, v := range want {
			if m[k] != v {
				return fmt.Errorf("metrics: want %v, got %v", want, m)
			}
		}
		return nil
	})
	if m[`natter_gateway_service_request_seconds_count{endpoint="gwbeat",service="user"}`] < 1 {
		t.Errorf("no presence lease renewal counted")
	}

	// Draining: /readyz fails.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := og.g.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _ := og.get(t, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz after Drain: %d, want 503", code)
	}
	if err := og.g.Ready(ctx); !errors.Is(err, gateway.ErrDraining) {
		t.Fatalf("Ready after Drain: %v", err)
	}
	m = og.metrics(t)
	if m[`natter_gateway_connections`] != 0 || m[`natter_gateway_connections_closed_total{reason="drain"}`] != 2 {
		t.Fatalf("after the drain: %v connections open, %v closed by the drain",
			m[`natter_gateway_connections`], m[`natter_gateway_connections_closed_total{reason="drain"}`])
	}
}

// TestMaxConns: the connection over --max-conns is told the server is full
// and closed; once one closes, a new one is served.
func TestMaxConns(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	og := startOpsGateway(t, c, func(cfg *gateway.Config) { cfg.MaxConns = 2 })
	a := dial(t, og.g.Addr(), '\n', "a")
	b := dial(t, og.g.Addr(), '\n', "b")
	for _, cl := range []*client{a, b} { // both are served
		cl.send(frame{"msgid": 11})
		cl.expect(12)
	}
	full := dial(t, og.g.Addr(), '\n', "full")
	f := full.recv()
	if f.num("msgid") != 22 || f.num("errno") != 118 || f.str("errmsg") != "server full" {
		t.Fatalf("over the limit: %v, want msgid 22 errno 118", f)
	}
	if _, err := full.recvRaw(5 * time.Second); !errors.Is(err, io.EOF) {
		t.Fatalf("over the limit: connection not closed: %v", err)
	}
	if v := og.metric(t, `natter_gateway_connections_closed_total{reason="conn_limit"}`); v != 1 {
		t.Fatalf("conn_limit closes = %v, want 1", v)
	}
	a.conn.Close()
	eventually.NoError(t, 5*time.Second, func() error {
		if got := og.metric(t, `natter_gateway_connections`); got != 1 {
			return fmt.Errorf("still waiting for the closed connection is still counted: got %v, want == 1", got)
		}
		return nil
	})
	d := dial(t, og.g.Addr(), '\n', "d")
	d.send(frame{"msgid": 11})
	d.expect(12)
}

// TestIdleTimeout: a connection that sends nothing for --idle-timeout is
// closed (a partial frame does not keep it open), one that pings is kept.
func TestIdleTimeout(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	og := startOpsGateway(t, c, func(cfg *gateway.Config) { cfg.IdleTimeout = 300 * time.Millisecond })
	silent := dial(t, og.g.Addr(), '\n', "silent")
	partial := dial(t, og.g.Addr(), '\n', "partial")
	partial.sendRaw(`{"msgid":11,`)
	pinger := dial(t, og.g.Addr(), '\n', "pinger")
	start := time.Now()
	for time.Since(start) < time.Second {
		pinger.send(frame{"msgid": 11})
		pinger.expect(12)
		time.Sleep(100 * time.Millisecond) // the client's heartbeat period
	}
	for _, cl := range []*client{silent, partial} {
		if s, err := cl.recvRaw(5 * time.Second); !errors.Is(err, io.EOF) {
			t.Fatalf("%s: got %q, %v; want the connection closed", cl.name, s, err)
		}
	}
	pinger.send(frame{"msgid": 11})
	pinger.expect(12)
	eventually.NoError(t, 5*time.Second, func() error {
		if got := og.metric(t, `natter_gateway_connections_closed_total{reason="idle"}`); got != 2 {
			return fmt.Errorf("still waiting for idle closes not counted: got %v, want == 2", got)
		}
		return nil
	})
}

// TestSlowClientCutOff: a client that does not read is disconnected once
// its write queue is full, and counted; another client of the same gateway
// keeps receiving, and the slow one finds every message in its inbox when
// it logs in again.
func TestSlowClientCutOff(t *testing.T) {
	c := newCluster(t, clusterOpts{floodRate: 100000})
	og := startOpsGateway(t, c, func(cfg *gateway.Config) { cfg.WriteLimit = 128 << 10 })
	s := dial(t, c.gws[0].Addr(), '\n', "sender")
	sid := s.register("sender", "pw")
	slowID := s.register("slow", "pw")
	okID := s.register("ok", "pw")
	s.login(sid, "pw")
	slow := dial(t, og.g.Addr(), '\n', "slow")
	slow.login(slowID, "pw")
	slow.conn.(*net.TCPConn).SetReadBuffer(4096) // and never read again
	ok := dial(t, og.g.Addr(), '\n', "ok")
	ok.login(okID, "pw")

	big := strings.Repeat("x", 60000) // under the 64 KiB frame limit
	sent := 0
	for og.metric(t, `natter_gateway_connections_closed_total{reason="slow_client"}`) == 0 {
		if sent == 2000 {
			t.Fatal("the client that does not read was not cut off")
		}
		sent++
		s.send(chat(slowID, big))
		s.expect(14)
	}
	t.Logf("cut off after %d messages of %d bytes", sent, len(big))
	s.chatTo(ok, okID, "still here")
	again := dial(t, og.g.Addr(), '\n', "slow-again")
	if ack := again.login(slowID, "pw"); ack.num("lastseq")+ack.num("pending") != int64(sent) {
		t.Fatalf("slow client's inbox after the cut: %v, want %d messages", ack, sent)
	}
}
