package loadgen

import (
	"strings"
	"testing"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/tools/internal/allinone/allinonetest"
)

// startWS runs a whole natter with its WebSocket endpoint and returns the
// endpoint's host:port (the bench's --addr with --transport ws).
func startWS(t *testing.T) string {
	t.Helper()
	_, url := allinonetest.StartWS(t, func(c *gateway.Config) { c.FloodRate, c.FloodBurst = 1e5, 1e5 })
	return strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), gateway.WSPath)
}

// TestWebSocketWorkloads runs each workload over WebSocket with the same
// checks as over TCP.
func TestWebSocketWorkloads(t *testing.T) {
	addr := startWS(t)
	t.Run("one-to-one", func(t *testing.T) {
		cfg := testConfig(addr)
		cfg.Transport = TransportWS
		r := runBench(t, cfg)
		if !r.OK || r.Lost != 0 || r.Duplicates != 0 || r.Reordered != 0 || r.SeqErrors != 0 {
			t.Fatalf("checks failed: %v", r.Problems())
		}
		if r.Delivered == 0 || r.Acked != r.Sent || r.Delivered != r.Acked || r.SendErrors != 0 || r.ConnErrors != 0 {
			t.Fatalf("sent %d, acknowledged %d, delivered %d, send errors %d, connection errors %d",
				r.Sent, r.Acked, r.Delivered, r.SendErrors, r.ConnErrors)
		}
		if len(r.Addrs) != 1 || r.Addrs[0] != "ws://"+addr+"/ws" {
			t.Errorf("report addresses %v: want the WebSocket URL", r.Addrs)
		}
	})
	t.Run("group", func(t *testing.T) {
		cfg := testConfig("ws://" + addr + "/ws") // a URL needs no --transport
		cfg.Workload = WorkloadGroup
		cfg.Groups, cfg.Members, cfg.Senders = 2, 5, 2
		cfg.Rate = 100
		r := runBench(t, cfg)
		if !r.OK || r.Lost != 0 || r.Duplicates != 0 || r.Reordered != 0 || r.SeqErrors != 0 || r.Foreign != 0 {
			t.Fatalf("checks failed: %v", r.Problems())
		}
		if want := r.Acked * int64(cfg.Members-1); r.Sent == 0 || r.Acked != r.Sent || r.Delivered != want {
			t.Fatalf("sent %d, acknowledged %d, delivered %d, want %d", r.Sent, r.Acked, r.Delivered, want)
		}
	})
	t.Run("idle", func(t *testing.T) {
		cfg := idleConfig(addr)
		cfg.Transport = TransportWS
		r := runConnBench(t, cfg)
		if ir := r.Idle; !r.OK || ir == nil || ir.Established != int64(cfg.Conns) || ir.PingsFailed != 0 || ir.ConnsLost != 0 {
			t.Fatalf("not OK: %v %+v", r.Problems(), ir)
		}
	})
	t.Run("resume-storm", func(t *testing.T) {
		cfg := stormConfig(addr, WorkloadResumeStorm)
		cfg.Transport = TransportWS
		cfg.Users = 50
		r := runConnBench(t, cfg)
		if sr := r.Storm; !r.OK || sr == nil || sr.Logins != int64(cfg.Users) || sr.Failed != 0 {
			t.Fatalf("not OK: %v %+v", r.Problems(), sr)
		}
	})
}

// TestWebSocketReconnectThroughCuts: WebSocket connections cut three times
// during a --reconnect run come back with their sessions, and nothing is
// lost, doubled or reordered.
func TestWebSocketReconnectThroughCuts(t *testing.T) {
	addr := startWS(t)
	const cuts = 3
	p := newProxy(t, addr)
	p.CutEveryReply(`"re":6,`, 10, cuts) // the REPLY to a ONE_CHAT (every tenth: a loaded machine sends few)
	cfg := faultConfig(p, WorkloadOneToOne, true)
	cfg.Transport = TransportWS
	r := runFaultBench(t, cfg)
	if got := p.Taken(); got != cuts {
		t.Fatalf("the proxy cut %d times, want %d (too few messages?)", got, cuts)
	}
	if !r.OK || r.Lost != 0 || r.Duplicates != 0 || r.Reordered != 0 || r.SeqErrors != 0 || r.GivenUp != 0 {
		t.Fatalf("checks failed: %v", r.Problems())
	}
	if rr := r.ReconnectReport; rr == nil || rr.Reconnects < cuts || rr.Resumed != rr.Reconnects || rr.PasswordRelogins != 0 {
		t.Fatalf("reconnect report %+v: want at least %d reconnects, all resumed", rr, cuts)
	}
	if r.Acked != r.Sent || r.Delivered != r.Acked {
		t.Fatalf("sent %d, acknowledged %d, delivered %d", r.Sent, r.Acked, r.Delivered)
	}
}
