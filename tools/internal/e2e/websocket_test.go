package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/gateway/wsconn"
	"github.com/natter-chat/natter/shared/eventually"
)

// The tests in this file run clients over WebSocket (gateway --ws-listen).
// A WebSocket client is a client like dial's whose connection is a
// wsconn.Conn: every frame it sends is one text message, every message it
// receives one frame, so all of client's helpers and the golden transcripts
// work unchanged, and what they check holds for both transports.

// wsURL is g's WebSocket endpoint.
func wsURL(g *gateway.Gateway) string { return "ws://" + g.WSAddr().String() + gateway.WSPath }

// dialWS connects a client to url (ws://host:port/ws).
func dialWS(t *testing.T, url, name string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := wsconn.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		conn.Close()
		<-conn.Done()
	})
	return &client{t: t, name: name, conn: conn, r: bufio.NewReaderSize(conn, 128<<10), term: '\n'}
}

// rawWS is a WebSocket to url without the frame adapter, for what a client
// of the adapter cannot send (binary messages, messages with newlines).
func rawWS(t *testing.T, url string, origin string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
	if origin != "" {
		opts.HTTPHeader.Set("Origin", origin)
	}
	ws, resp, err := websocket.Dial(ctx, url, opts)
	if err == nil {
		t.Cleanup(func() { ws.CloseNow() })
	}
	return ws, resp, err
}

func wsSend(t *testing.T, ws *websocket.Conn, typ websocket.MessageType, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.Write(ctx, typ, []byte(msg)); err != nil {
		t.Fatalf("websocket write: %v", err)
	}
}

// wsRecv reads one message; the error is the close, if the connection
// closed instead.
func wsRecv(t *testing.T, ws *websocket.Conn) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, b, err := ws.Read(ctx)
	if err == nil && typ != websocket.MessageText {
		t.Fatalf("server sent a %v message", typ)
	}
	return string(b), err
}

// wsGateways adds two gateways with a WebSocket endpoint (and ops servers
// for their metrics) to c.
func wsGateways(t *testing.T, c *cluster, tweak func(*gateway.Config)) [2]*opsGateway {
	t.Helper()
	var gws [2]*opsGateway
	for i := range gws {
		gws[i] = startOpsGateway(t, c, func(cfg *gateway.Config) {
			cfg.WSListen = "127.0.0.1:0"
			if tweak != nil {
				tweak(cfg)
			}
		})
	}
	return gws
}

// TestWebSocketChat: WebSocket and TCP clients on two gateways chat one to
// one both ways, befriend each other, and talk in a group.
func TestWebSocketChat(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	gws := wsGateways(t, c, nil)
	alice := dialWS(t, wsURL(gws[0].g), "alice")   // WebSocket, gateway 0
	bob := dial(t, gws[1].g.Addr(), '\n', "bob")   // TCP, gateway 1
	carol := dialWS(t, wsURL(gws[1].g), "carol")   // WebSocket, gateway 1
	dave := dial(t, gws[0].g.Addr(), '\n', "dave") // TCP, gateway 0
	aid, bid := alice.register("alice", "pw"), bob.register("bob", "pw")
	cid, did := carol.register("carol", "pw"), dave.register("dave", "pw")
	ack := alice.login(aid, "pw")
	if ack.str("token") == "" || ack.num("lastseq") != 0 {
		t.Fatalf("alice's LOGIN_ACK over WebSocket: %v", ack)
	}
	bob.login(bid, "pw")
	carol.login(cid, "pw")
	dave.login(did, "pw")

	// One to one, both ways, and a friendship with presence.
	alice.send(chat(bid, "hi bob, from a browser"))
	if r := alice.expect(14); r.num("errno") != 0 || r.str("mid") == "" {
		t.Fatalf("alice's reply: %v", r)
	}
	if got := bob.expect(6); got.str("msg") != "hi bob, from a browser" || got.num("id") != aid || got.num("seq") != 1 {
		t.Fatalf("bob got %v", got)
	}
	bob.send(chat(aid, "hi alice, from a terminal"))
	bob.expect(14)
	if got := alice.expect(6); got.str("msg") != "hi alice, from a terminal" || got.num("id") != bid || got.num("seq") != 1 {
		t.Fatalf("alice got %v", got)
	}
	alice.ok(frame{"msgid": 13, "seq": 1, "reqid": "ack"})
	alice.ok(frame{"msgid": 7, "friendid": bid})
	bob.send(frame{"msgid": 11, "reqid": 5})
	bob.expect(12)
	alice.send(frame{"msgid": 18, "reqid": "l"})
	if r := alice.expect(14); !strings.Contains(fmt.Sprint(r["friends"]), "bob") {
		t.Fatalf("alice's friends: %v", r)
	}

	// A group: created over TCP, joined over both, written from both.
	gid := bob.createGroup("mixed", "tcp and websocket")
	alice.ok(frame{"msgid": 9, "groupid": gid})
	carol.ok(frame{"msgid": 9, "groupid": gid})
	dave.ok(frame{"msgid": 9, "groupid": gid})
	bob.send(frame{"msgid": 10, "groupid": gid, "msg": "to everyone"})
	bob.expect(14)
	for _, cl := range []*client{alice, carol, dave} {
		if got := cl.recvChats(10, 1)[0]; got.str("msg") != "to everyone" || got.num("groupid") != gid || got.num("id") != bid {
			t.Fatalf("%s got %v", cl.name, got)
		}
	}
	carol.send(frame{"msgid": 10, "groupid": gid, "msg": "from carol's browser"})
	carol.expect(14)
	for _, cl := range []*client{alice, bob, dave} {
		if got := cl.recvChats(10, 1)[0]; got.str("msg") != "from carol's browser" || got.num("id") != cid {
			t.Fatalf("%s got %v", cl.name, got)
		}
	}

	// The same push, to a TCP and a WebSocket client, is the same frame
	// but for the recipient's own seq.
	bob.send(frame{"msgid": 10, "groupid": gid, "msg": "same bytes?"})
	bob.expect(14)
	carol.recvChats(10, 1)
	wsFrame, tcpFrame := nextChat(alice), nextChat(dave)
	if want := strings.Replace(tcpFrame, `"seq":3`, `"seq":4`, 1); wsFrame != want {
		t.Fatalf("the push over WebSocket\n  %s\ndiffers from the one over TCP\n  %s", wsFrame, tcpFrame)
	}

	if n := gws[0].metric(t, `natter_gateway_transport_connections{transport="websocket"}`); n != 1 {
		t.Errorf("gateway 0 counts %v WebSocket connections, want 1", n)
	}
	if n := gws[1].metric(t, `natter_gateway_transport_connections{transport="tcp"}`); n != 1 {
		t.Errorf("gateway 1 counts %v TCP connections, want 1", n)
	}
}

// nextChat is the next frame cl receives that is not a presence notice,
// as sent.
func nextChat(cl *client) string {
	cl.t.Helper()
	for {
		f, err := cl.recvRaw(5 * time.Second)
		if err != nil {
			cl.t.Fatalf("%s: %v", cl.name, err)
		}
		if !strings.Contains(f, `"msgid":16,`) {
			return f
		}
	}
}

// TestGoldenOverWebSocket replays the golden transcripts of TestGolden with
// every newline-framed connection over WebSocket (NUL-framed ones, the
// original client's, stay on TCP): every frame the gateway sends must be
// byte for byte the one it sends over TCP.
func TestGoldenOverWebSocket(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden transcripts in testdata/: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(strings.TrimPrefix(file, "testdata/"), ".txt"), func(t *testing.T) {
			c := newCluster(t, clusterOpts{})
			gws := wsGateways(t, c, nil)
			runGolden(t, file, func(name string, gw int, term byte) *client {
				if term == 0 {
					return dial(t, gws[gw].g.Addr(), 0, name)
				}
				return dialWS(t, wsURL(gws[gw].g), name)
			})
		})
	}
}

// TestWebSocketBadMessages: malformed and oversized frames get the same
// replies over WebSocket as over TCP; a raw newline cannot split a message
// into two frames; a binary message is refused and closes only its own
// connection.
func TestWebSocketBadMessages(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	og := startOpsGateway(t, c, func(cfg *gateway.Config) {
		cfg.WSListen = "127.0.0.1:0"
		cfg.MaxFrame = 4096
	})
	url := wsURL(og.g)
	tcp := dial(t, og.g.Addr(), '\n', "tcp")
	ws := dialWS(t, url, "ws")
	bystander := dialWS(t, url, "bystander")
	bystander.login(bystander.register("bystander", "pw"), "pw")

	for _, f := range []string{
		`{"msgid":1,`, `[1,2]`, `{"id":1}`, `{"msgid":"1"}`, `{"msgid":999,"reqid":"r"}`,
		`{"msgid":6,"toid":1,"msg":"x","reqid":7}`, `{"msgid":1,"id":"x","password":"pw"}`,
		`{"msgid":11,"reqid":{"nested":[1,2]}}`, `{"msgid":4,"name":"","password":"pw","reqid":1}`,
	} {
		tcp.send(f)
		ws.send(f)
		want, err := tcp.recvRaw(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ws.recvRaw(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: over WebSocket\n  %s\nover TCP\n  %s", f, got, want)
		}
	}

	// A message with raw newlines (two frames on TCP) is one malformed
	// frame; the connection stays usable.
	raw, _, err := rawWS(t, url, "")
	if err != nil {
		t.Fatal(err)
	}
	wsSend(t, raw, websocket.MessageText, "{\"msgid\":11}\n{\"msgid\":11}\n")
	if m, err := wsRecv(t, raw); err != nil || !strings.Contains(m, `"errno":100`) {
		t.Fatalf("a message with newlines: %q %v, want errno 100", m, err)
	}
	wsSend(t, raw, websocket.MessageText, "{\"msgid\":6,\"toid\":1,\"msg\":\"a\x00b\"}")
	if m, err := wsRecv(t, raw); err != nil || !strings.Contains(m, `"errno":100`) {
		t.Fatalf("a message with a NUL: %q %v, want errno 100", m, err)
	}
	wsSend(t, raw, websocket.MessageText, `{"msgid":11,"reqid":"still"}`)
	if m, err := wsRecv(t, raw); err != nil || m != `{"msgid":12,"reqid":"still"}` {
		t.Fatalf("after bad messages: %q %v", m, err)
	}

	// Binary: errno 100, then the connection closes with 1003.
	wsSend(t, raw, websocket.MessageBinary, `{"msgid":11}`)
	if m, err := wsRecv(t, raw); err != nil || m != `{"errmsg":"binary message: send each frame as one text message","errno":100,"msgid":14}` {
		t.Fatalf("binary message answered %q %v", m, err)
	}
	if _, err := wsRecv(t, raw); websocket.CloseStatus(err) != websocket.StatusUnsupportedData {
		t.Fatalf("after a binary message: %v, want close status 1003", err)
	}

	// Oversized: errno 104 as on TCP, then the connection closes.
	big := `{"msgid":11,"pad":"` + strings.Repeat("x", 5000) + `"}`
	tcp.send(big)
	ws.send(big)
	want, _ := tcp.recvRaw(5 * time.Second)
	got, _ := ws.recvRaw(5 * time.Second)
	if got != want || !strings.Contains(got, `"errno":104`) {
		t.Fatalf("oversized: over WebSocket %q, over TCP %q", got, want)
	}
	if _, err := ws.recvRaw(5 * time.Second); err == nil {
		t.Fatal("the WebSocket stayed open after an oversized message")
	}

	// Nobody else noticed.
	bystander.send(frame{"msgid": 11, "reqid": 1})
	bystander.expect(12)
	eventually.NoError(t, 5*time.Second, func() error {
		m := og.metrics(t)
		if !(m[`natter_gateway_connections_closed_total{reason="unsupported_data"}`] == 1 &&
			m[`natter_gateway_connections_closed_total{reason="frame_too_large"}`] == 2) {
			return errors.New("close reasons unsupported_data and frame_too_large not counted")
		}
		return nil
	})
}

// TestWebSocketLimits: the flood limit, --max-conns and --idle-timeout
// apply to WebSocket connections as to TCP ones.
func TestWebSocketLimits(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	t.Run("flood", func(t *testing.T) {
		og := startOpsGateway(t, c, func(cfg *gateway.Config) { cfg.WSListen = "127.0.0.1:0" })
		raw, _, err := rawWS(t, wsURL(og.g), "")
		if err != nil {
			t.Fatal(err)
		}
		for range 1000 {
			wsSend(t, raw, websocket.MessageText, `{"msgid":11}`)
		}
		// Each frame is answered by a PONG, or counted in a flood notice
		// (errno 109, at most one a second, "dropped": how many).
		pongs, notices, dropped := 0, 0, 0
		for pongs+dropped < 1000 {
			m, err := wsRecv(t, raw)
			if err != nil {
				t.Fatalf("after %d pongs and %d dropped: %v", pongs, dropped, err)
			}
			var f frame
			if err := json.Unmarshal([]byte(m), &f); err != nil {
				t.Fatal(err)
			}
			switch {
			case f.num("msgid") == 12:
				pongs++
			case f.num("errno") == 109:
				notices++
				dropped += int(max(1, f.num("dropped")))
			}
		}
		if dropped == 0 || notices > 3 {
			t.Fatalf("1000 frames at once over WebSocket: %d pongs, %d dropped in %d notices", pongs, dropped, notices)
		}
		t.Logf("%d of 1000 refused, in %d notices", dropped, notices)
	})
	t.Run("max conns", func(t *testing.T) {
		og := startOpsGateway(t, c, func(cfg *gateway.Config) {
			cfg.WSListen = "127.0.0.1:0"
			cfg.MaxConns = 2
		})
		dial(t, og.g.Addr(), '\n', "tcp")
		first := dialWS(t, wsURL(og.g), "first")
		first.send(frame{"msgid": 11})
		first.expect(12) // served, so counted before the next one comes
		raw, _, err := rawWS(t, wsURL(og.g), "")
		if err != nil {
			t.Fatal(err)
		}
		if m, err := wsRecv(t, raw); err != nil || m != `{"errmsg":"server full","errno":118,"msgid":22}` {
			t.Fatalf("third connection: %q %v", m, err)
		}
		if _, err := wsRecv(t, raw); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
			t.Fatalf("third connection after RECONNECT: %v", err)
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		og := startOpsGateway(t, c, func(cfg *gateway.Config) {
			cfg.WSListen = "127.0.0.1:0"
			cfg.IdleTimeout = 300 * time.Millisecond
		})
		pinger := dialWS(t, wsURL(og.g), "pinger")
		silent := dialWS(t, wsURL(og.g), "silent")
		for range 8 { // 800 ms of pings every 100 ms keep it open
			pinger.send(frame{"msgid": 11})
			pinger.expect(12)
			time.Sleep(100 * time.Millisecond) // the client's pace, not a wait for the server
		}
		if _, err := silent.recvRaw(5 * time.Second); err == nil {
			t.Fatal("the silent WebSocket got a frame")
		}
		eventually.NoError(t, 5*time.Second, func() error {
			if got := og.metric(t, `natter_gateway_connections_closed_total{reason="idle"}`); got != 1 {
				return fmt.Errorf("still waiting for idle close not counted: got %v, want == 1", got)
			}
			return nil
		})
		pinger.send(frame{"msgid": 11})
		pinger.expect(12)
	})
}

// TestWebSocketOrigins: browsers' pages from other origins are refused
// (403) unless --ws-origins names them; the page's own origin and clients
// that send no Origin are accepted. The port serves the page with --web,
// and nothing else (no /healthz).
func TestWebSocketOrigins(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	og := startOpsGateway(t, c, func(cfg *gateway.Config) {
		cfg.WSListen = "127.0.0.1:0"
		cfg.WSOrigins = []string{"chat.example.com", "https://*.example.org"}
		cfg.Web = true
	})
	host := og.g.WSAddr().String()
	url := "ws://" + host + gateway.WSPath
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://" + host, true}, // the page the gateway serves
		{"http://chat.example.com", true},
		{"https://a.example.org", true},
		{"http://a.example.org", false}, // the pattern names https
		{"http://evil.example", false},
		{"http://127.0.0.1:1", false}, // same host, another port: another origin
	} {
		ws, resp, err := rawWS(t, url, tc.origin)
		switch {
		case tc.ok && err != nil:
			t.Errorf("origin %q refused: %v", tc.origin, err)
		case !tc.ok && err == nil:
			t.Errorf("origin %q accepted", tc.origin)
		case !tc.ok && (resp == nil || resp.StatusCode != http.StatusForbidden):
			t.Errorf("origin %q: %v, want HTTP 403", tc.origin, err)
		case tc.ok:
			wsSend(t, ws, websocket.MessageText, `{"msgid":11}`)
			if m, err := wsRecv(t, ws); err != nil || m != `{"msgid":12}` {
				t.Errorf("origin %q: PING answered %q %v", tc.origin, m, err)
			}
		}
	}
	if n := og.metric(t, `natter_gateway_websocket_upgrades_refused_total{reason="origin"}`); n != 3 {
		t.Errorf("%v origin refusals counted, want 3", n)
	}

	get := func(path string) (int, string, string) {
		resp, err := http.Get("http://" + host + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	if code, ctype, body := get("/"); code != http.StatusOK || !strings.HasPrefix(ctype, "text/html") || !strings.Contains(body, "<html") {
		t.Errorf("GET / with --web: %d %s", code, ctype)
	}
	if code, _, _ := get("/healthz"); code != http.StatusNotFound {
		t.Errorf("GET /healthz on the WebSocket port: %d, want 404 (health is on --http)", code)
	}
	if code, _, _ := get(gateway.WSPath); code != http.StatusUpgradeRequired {
		t.Errorf("GET /ws without an upgrade: %d, want 426", code)
	}
}

// sendNumbered sends messages "m<from>" to "m<to>" to user rid, each
// acknowledged.
func (c *client) sendNumbered(rid int64, from, to int) {
	c.t.Helper()
	for i := from; i <= to; i++ {
		c.send(chat(rid, fmt.Sprint("m", i)))
		c.expect(14)
	}
}

// expectNumbered reads the chats sendNumbered sent, "m<from>" to "m<to>",
// which are also their seqs.
func (c *client) expectNumbered(from, to int) {
	c.t.Helper()
	for i, got := range c.recvChats(6, to-from+1) {
		if want := int64(from + i); got.num("seq") != want || got.str("msg") != fmt.Sprint("m", want) {
			c.t.Fatalf("%s got %v, want seq %d", c.name, got, want)
		}
	}
}

// resumeWS logs user rid in again on a new WebSocket to url, with its
// resume token and lastseq; the ack must count pending messages waiting.
func resumeWS(t *testing.T, url string, rid int64, token string, lastseq, pending int64) *client {
	t.Helper()
	c := dialWS(t, url, "receiver (moved)")
	c.send(frame{"msgid": 1, "id": rid, "token": token, "lastseq": lastseq})
	if ack := c.expect(2); ack.num("errno") != 0 || ack.num("lastseq") != lastseq || ack.num("pending") != pending {
		t.Fatalf("resume on %s with lastseq %d: %v, want %d pending", url, lastseq, ack, pending)
	}
	return c
}

// TestWebSocketDrain: a draining gateway sends RECONNECT to its WebSocket
// clients after what was queued for them; the client resumes on the other
// gateway with its token and lastseq, and gets every message once, in
// order. The drained gateway refuses new handshakes.
func TestWebSocketDrain(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	gws := wsGateways(t, c, func(cfg *gateway.Config) { cfg.DrainWindow = 200 * time.Millisecond })
	sender := dial(t, gws[1].g.Addr(), '\n', "sender")
	recv := dialWS(t, wsURL(gws[0].g), "receiver")
	sid, rid := sender.register("sender", "pw"), recv.register("receiver", "pw")
	sender.login(sid, "pw")
	token := recv.login(rid, "pw").str("token")
	send := func(from, to int) { sender.sendNumbered(rid, from, to) }
	expect := func(cl *client, from, to int) { cl.expectNumbered(from, to) }
	send(1, 5)
	expect(recv, 1, 5)
	recv.ok(frame{"msgid": 13, "seq": 5, "reqid": 1})
	send(6, 8) // received, never acknowledged: lastseq skips them

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- gws[0].g.Drain(ctx) }()
	expect(recv, 6, 8)
	if f := recv.expect(22); f.num("errno") != 113 {
		t.Fatalf("RECONNECT: %v", f)
	}
	if _, err := recv.recvRaw(5 * time.Second); err == nil {
		t.Fatal("the WebSocket stayed open after RECONNECT")
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
	if _, resp, err := rawWS(t, wsURL(gws[0].g), ""); err == nil {
		t.Fatal("a drained gateway accepted a WebSocket")
	} else if resp != nil && resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a drained gateway answered %d", resp.StatusCode)
	}

	send(9, 12)
	moved := resumeWS(t, wsURL(gws[1].g), rid, token, 8, 4)
	expect(moved, 9, 12)
	send(13, 14)
	expect(moved, 13, 14)
	moved.quiet(150 * time.Millisecond)
	if n := gws[0].metric(t, `natter_gateway_connections_closed_total{reason="drain"}`); n != 1 {
		t.Errorf("drain closes counted: %v, want 1", n)
	}
}

// TestWebSocketClientSurvivesKilledGateway runs natter serve (NATS, the
// services, gateway 1) and a natter-gateway process, both with WebSocket.
// A browser-like client on the gateway process receives messages; the
// process is killed with SIGKILL (no RECONNECT, no close handshake); the
// client logs in on the other gateway with its resume token and lastseq
// and gets everything sent meanwhile, none twice.
func TestWebSocketClientSurvivesKilledGateway(t *testing.T) {
	srv := startProc(t, "natter", "serve", "--listen", anyPort, "--ws-listen", anyPort, "--nats-listen", anyPort,
		"--data", t.TempDir(), "--bcrypt-cost", "4")
	srv.listenAddr(logServes)
	ws1, natsAddr := srv.listenAddr(logWS), srv.listenAddr(logNATS)
	g2 := startProc(t, "natter-gateway", "--nats", "nats://"+natsAddr, "--listen", anyPort, "--ws-listen", anyPort, "--presence-ttl", "2s")
	ws2 := g2.listenAddr(logWS)

	sender := dialWS(t, "ws://"+ws1+gateway.WSPath, "sender")
	recv := dialWS(t, "ws://"+ws2+gateway.WSPath, "receiver")
	sid, rid := sender.register("sender", "pw"), recv.register("receiver", "pw")
	sender.login(sid, "pw")
	token := recv.login(rid, "pw").str("token")
	send := func(from, to int) { sender.sendNumbered(rid, from, to) }
	expect := func(cl *client, from, to int) { cl.expectNumbered(from, to) }
	send(1, 10)
	expect(recv, 1, 10)
	recv.send(frame{"msgid": 13, "seq": 6}) // acknowledged up to 6; 7-10 seen but not acknowledged

	g2.stop(syscall.SIGKILL)
	if _, err := recv.recvRaw(10 * time.Second); err == nil {
		t.Fatal("the WebSocket of a killed gateway stayed open")
	}
	send(11, 20)
	moved := resumeWS(t, "ws://"+ws1+gateway.WSPath, rid, token, 10, 10)
	expect(moved, 11, 20)
	send(21, 22)
	expect(moved, 21, 22)
	moved.quiet(150 * time.Millisecond)
}
