package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/eventually"
)

// forEachDB runs a test on SQLite and on MySQL/MariaDB.
func forEachDB(t *testing.T, o clusterOpts, f func(t *testing.T, c *cluster)) {
	t.Run("sqlite", func(t *testing.T) { f(t, newCluster(t, o)) })
	t.Run("mysql", func(t *testing.T) {
		o := o
		o.mysql = true
		f(t, newCluster(t, o))
	})
}

func TestChatAcrossGateways(t *testing.T) {
	forEachDB(t, clusterOpts{}, func(t *testing.T, c *cluster) {
		a := dial(t, c.gws[0].Addr(), '\n', "a")
		b := dial(t, c.gws[1].Addr(), '\n', "b")
		aid := a.signUp("alice", "pw-a")
		bid := b.signUp("bob", "pw-b")

		// A sender's time is not what the recipient sees: the server's clock
		// is (a forged time could pass for a second line of a terminal).
		a.send(frame{"msgid": 6, "toid": bid, "msg": "hi bob", "time": "2001-01-01 00:00:00\n[9]mallory said: x", "reqid": "r1", "extra": []int{1, 2}})
		ack := a.expect(14)
		if ack.num("errno") != 0 || ack.num("re") != 6 || ack.str("reqid") != "r1" || ack.str("mid") == "" {
			t.Fatalf("sender ack = %v", ack)
		}
		got := b.expect(6)
		if got.num("id") != aid || got.str("name") != "alice" || got.str("msg") != "hi bob" || got.num("seq") != 1 ||
			got.str("mid") != ack.str("mid") || !serverTime(got.str("time")) || got["extra"] == nil {
			t.Fatalf("bob got %v", got)
		}
		if _, ok := got["reqid"]; ok {
			t.Fatalf("reqid leaked to the recipient: %v", got)
		}
		b.send(frame{"msgid": 13, "seq": 1})

		b.send(chat(aid, "hi alice"))
		b.expect(14)
		if got := a.expect(6); got.num("id") != bid || got.str("msg") != "hi alice" || got.num("seq") != 1 {
			t.Fatalf("alice got %v", got)
		}
		a.quiet(100 * time.Millisecond)
		b.quiet(100 * time.Millisecond)
	})
}

func TestOfflineMessagesInOrderExactlyOnce(t *testing.T) {
	forEachDB(t, clusterOpts{}, func(t *testing.T, c *cluster) {
		a := dial(t, c.gws[0].Addr(), '\n', "a")
		_, bid := a.signUpWithPeer("alice", "bob", "pw")
		for i := 1; i <= 3; i++ {
			a.send(chat(bid, fmt.Sprintf("m%d", i)))
			a.expect(14)
		}
		b := dial(t, c.gws[1].Addr(), '\n', "b")
		if ack := b.login(bid, "pw"); ack.num("pending") != 3 {
			t.Fatalf("login ack = %v, want pending 3", ack)
		}
		for i := 1; i <= 3; i++ {
			got := b.expect(6)
			if got.str("msg") != fmt.Sprintf("m%d", i) || got.num("seq") != int64(i) {
				t.Fatalf("message %d: %v", i, got)
			}
		}
		b.quiet(150 * time.Millisecond)
		// Acknowledge the first two, drop the connection without logout: the
		// third comes again, the first two never do.
		b.send(frame{"msgid": 13, "seq": 2})
		b.send(frame{"msgid": 11, "reqid": 1})
		b.expect(12)
		b.conn.Close()

		b2 := dial(t, c.gws[0].Addr(), '\n', "b2")
		b2.login(bid, "pw") // at once: the dropped session was released
		got := b2.expect(6)
		if got.num("seq") != 3 || got.str("msg") != "m3" {
			t.Fatalf("after reconnect: %v", got)
		}
		b2.quiet(150 * time.Millisecond)

		// lastseq: a client that already has 3 gets nothing again.
		b2.send(frame{"msgid": 3})
		b2.expect(14)
		b2.login(bid, "pw", "lastseq", 3)
		b2.quiet(150 * time.Millisecond)
	})
}

func TestMessagesDuringReplayKeepOrder(t *testing.T) {
	c := newCluster(t, clusterOpts{floodRate: 100000, writeLimit: 128 << 10})
	a := dial(t, c.gws[0].Addr(), '\n', "a")
	_, bid := a.signUpWithPeer("alice", "bob", "pw")
	// Far more than the write queue holds (64 frames here): the replay is
	// paced by the reader instead of cutting it off as slow.
	const before, during = 3000, 300
	for i := 1; i <= before; i++ {
		a.send(chat(bid, fmt.Sprint(i)))
	}
	for i := 1; i <= before; i++ {
		a.expect(14)
	}
	b := dial(t, c.gws[1].Addr(), '\n', "b")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := before + 1; i <= before+during; i++ {
			a.send(chat(bid, fmt.Sprint(i)))
		}
	}()
	b.login(bid, "pw")
	for i := 1; i <= before+during; i++ {
		got := b.expect(6)
		if got.num("seq") != int64(i) || got.str("msg") != fmt.Sprint(i) {
			t.Fatalf("message %d: %v", i, got)
		}
	}
	<-done
	b.quiet(150 * time.Millisecond)
}

func TestIdentityComesFromSession(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	a := dial(t, c.gws[0].Addr(), '\n', "a")
	aid := a.register("alice", "pw")
	bid := a.register("bob", "pw")
	cid := a.register("carol", "pw")
	b := dial(t, c.gws[1].Addr(), '\n', "b")
	b.login(bid, "pw")
	a.login(aid, "pw")
	a.send(frame{"msgid": 6, "id": cid, "name": "carol", "toid": bid, "msg": "spoof", "mid": "x", "seq": 99})
	a.expect(14)
	got := b.expect(6)
	if got.num("id") != aid || got.str("name") != "alice" || got.num("seq") != 1 || got.str("mid") == "x" {
		t.Fatalf("spoofed identity got through: %v", got)
	}
}

func TestBadInputIsContained(t *testing.T) {
	c := newCluster(t, clusterOpts{maxFrame: 4096})
	a := dial(t, c.gws[0].Addr(), '\n', "a")
	b := dial(t, c.gws[0].Addr(), '\n', "b")
	aid := a.register("alice", "pw")
	bid := b.signUp("bob", "pw")

	cases := []struct {
		name  string
		frame string
		errno int64
	}{
		{"malformed json", `{"msgid":1,`, 100},
		{"not an object", `[1,2]`, 100},
		{"missing msgid", `{"id":1}`, 101},
		{"msgid wrong type", `{"msgid":"1"}`, 101},
		{"unknown msgid", `{"msgid":999}`, 102},
		{"not logged in", `{"msgid":6,"toid":1,"msg":"x"}`, 103},
		{"login id wrong type", `{"msgid":1,"id":"x","password":"pw"}`, 101},
		{"login missing password", `{"msgid":1,"id":1}`, 101},
	}
	for _, tc := range cases {
		a.send(tc.frame)
		if f := a.recv(); f.num("errno") != tc.errno || f.str("errmsg") == "" {
			t.Errorf("%s: got %v, want errno %d", tc.name, f, tc.errno)
		}
	}
	a.login(aid, "pw")
	loggedIn := []struct {
		name  string
		frame frame
		errno int64
	}{
		{"toid wrong type", frame{"msgid": 6, "toid": "2", "msg": "x"}, 101},
		{"msg missing", frame{"msgid": 6, "toid": bid}, 101},
		{"msg wrong type", frame{"msgid": 6, "toid": bid, "msg": 5}, 101},
		{"unknown recipient", frame{"msgid": 6, "toid": 987654, "msg": "x"}, 105},
		{"negative recipient", frame{"msgid": 6, "toid": -1, "msg": "x"}, 101},
		{"cid too long", frame{"msgid": 6, "toid": bid, "msg": "x", "cid": strings.Repeat("c", 65)}, 101},
		{"ack wrong type", frame{"msgid": 13, "seq": "1"}, 101},
		{"second login", frame{"msgid": 1, "id": aid, "password": "pw"}, 107},
		{"friendid wrong type", frame{"msgid": 7, "friendid": "2"}, 101},
		{"group chat without groupid", frame{"msgid": 10, "msg": "x"}, 101},
		{"group chat zero groupid", frame{"msgid": 10, "groupid": 0, "msg": "x"}, 101},
		{"create group without name", frame{"msgid": 8, "groupdesc": "d"}, 101},
		{"members of wrong type", frame{"msgid": 21, "groupid": []int{1}}, 101},
	}
	for _, tc := range loggedIn {
		a.send(tc.frame)
		if f := a.recv(); f.num("errno") != tc.errno || f.str("errmsg") == "" {
			t.Errorf("%s: got %v, want errno %d", tc.name, f, tc.errno)
		}
	}
	// Still usable, nothing was stored for bob.
	a.send(chat(bid, "still here"))
	a.expect(14)
	if got := b.expect(6); got.str("msg") != "still here" || got.num("seq") != 1 {
		t.Fatalf("bob got %v", got)
	}

	// An oversized frame is answered and closes only that connection.
	a.sendRaw(strings.Repeat("x", 5000) + "\n")
	if f := a.recv(); f.num("errno") != 104 {
		t.Fatalf("oversized: %v", f)
	}
	if _, err := a.recvRaw(2 * time.Second); err == nil {
		t.Fatal("connection stayed open after an oversized frame")
	}
	b.send(frame{"msgid": 11})
	b.expect(12)
}

func TestFloodIsRefused(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	a := dial(t, c.gws[0].Addr(), '\n', "a")
	var burst strings.Builder
	for i := 0; i < 1000; i++ {
		burst.WriteString(`{"msgid":11}` + "\n")
	}
	start := time.Now()
	a.sendRaw(burst.String())
	// The frames over the limit are dropped; their error replies come at
	// most one a second, counting what was dropped: a burst of refused
	// frames does not fill the client's queue with answers.
	pongs, floods, dropped := 0, 0, int64(0)
	for pongs+int(dropped) < 1000 {
		f := a.recv()
		switch {
		case f.num("msgid") == 12:
			pongs++
		case f.num("errno") == 109:
			floods++
			dropped += max(1, f.num("dropped"))
		default:
			t.Fatalf("unexpected %v", f)
		}
	}
	if took := time.Since(start); pongs == 0 || floods == 0 || floods > 1+int(took/time.Second) {
		t.Fatalf("pongs %d, %d flood notices for %d dropped frames in %s", pongs, floods, dropped, took)
	}
}

func TestClientMessageIDDeduplicates(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	a := dial(t, c.gws[0].Addr(), '\n', "a")
	_, bid := a.signUpWithPeer("alice", "bob", "pw")
	m := chat(bid, "once")
	m["cid"] = "client-1"
	a.send(m)
	first := a.expect(14)
	a.send(m)
	second := a.expect(14)
	if first.str("mid") != second.str("mid") || second["duplicate"] != true {
		t.Fatalf("retry: first %v second %v", first, second)
	}
	b := dial(t, c.gws[1].Addr(), '\n', "b")
	if ack := b.login(bid, "pw"); ack.num("pending") != 1 {
		t.Fatalf("pending = %v", ack)
	}
	b.expect(6)
	b.quiet(150 * time.Millisecond)
}

func TestDuplicateLoginKick(t *testing.T) {
	forEachDB(t, clusterOpts{}, func(t *testing.T, c *cluster) {
		a := dial(t, c.gws[0].Addr(), '\n', "a")
		aid, bid := a.signUpWithPeer("alice", "bob", "pw")
		a2 := dial(t, c.gws[1].Addr(), '\n', "a2")
		a2.login(aid, "pw")
		if f := a.expect(15); f.num("errno") != 108 {
			t.Fatalf("kick notice = %v", f)
		}
		if _, err := a.recvRaw(2 * time.Second); err == nil {
			t.Fatal("kicked connection stayed open")
		}
		// Messages now reach only the new session.
		b := dial(t, c.gws[0].Addr(), '\n', "b")
		b.login(bid, "pw")
		b.chatTo(a2, aid, "to the new one")
	})
}

func TestDuplicateLoginReject(t *testing.T) {
	c := newCluster(t, clusterOpts{policy: "reject"})
	a := dial(t, c.gws[0].Addr(), '\n', "a")
	aid := a.signUp("alice", "pw")
	a2 := dial(t, c.gws[1].Addr(), '\n', "a2")
	a2.send(frame{"msgid": 1, "id": aid, "password": "pw"})
	if f := a2.expect(2); f.num("errno") != 2 || f.str("errmsg") != "this account is using, input another!" {
		t.Fatalf("second login = %v", f)
	}
	a2.send(frame{"msgid": 1, "id": aid, "password": "wrong"})
	if f := a2.expect(2); f.num("errno") != 1 || f.str("errmsg") != "id or password is invalid!" {
		t.Fatalf("wrong password = %v", f)
	}
	// Logging out (connection stays open) frees the account at once.
	a.send(frame{"msgid": 3})
	a.expect(14)
	a2.login(aid, "pw")
}

func TestRacingLoginsEndWithOneSession(t *testing.T) {
	for _, policy := range []string{"kick", "reject"} {
		t.Run(policy, func(t *testing.T) {
			c := newCluster(t, clusterOpts{policy: policy, mysql: true})
			r := dial(t, c.gws[0].Addr(), '\n', "r")
			uid := r.register("racer", "pw")
			const n = 8
			clients := make([]*client, n)
			for i := range clients {
				clients[i] = dial(t, c.gws[i%2].Addr(), '\n', fmt.Sprint("c", i))
			}
			// All logins at once (t.Fatal only from the test goroutine).
			login := fmt.Sprintf(`{"msgid":1,"id":%d,"password":"pw"}`+"\n", uid)
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i, cl := range clients {
				wg.Add(1)
				go func() { defer wg.Done(); _, errs[i] = cl.conn.Write([]byte(login)) }()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			// Every client gets its login answer; with kick, all but one are
			// then kicked; with reject, exactly one succeeds.
			ok := 0
			var succeeded []*client
			for _, cl := range clients {
				if f := cl.expect(2); f.num("errno") == 0 {
					ok++
					succeeded = append(succeeded, cl)
				}
			}
			alive := 0
			for _, cl := range succeeded {
				for {
					s, err := cl.recvRaw(1500 * time.Millisecond)
					if err != nil {
						alive++ // not kicked: still open
						break
					}
					if strings.Contains(s, `"msgid":15`) {
						break
					}
				}
			}
			if policy == "reject" && ok != 1 {
				t.Fatalf("reject: %d logins succeeded, want 1", ok)
			}
			if alive != 1 {
				t.Fatalf("%d sessions alive, want exactly 1 (%d logins succeeded)", alive, ok)
			}
		})
	}
}

// TestStoppingAGatewayAffectsOnlyItsUsers: a gateway stopped gracefully ends
// its own sessions at once (its users can log in elsewhere immediately, even
// under the reject policy), and users of the other gateway notice nothing.
func TestStoppingAGatewayAffectsOnlyItsUsers(t *testing.T) {
	c := newCluster(t, clusterOpts{policy: "reject"})
	a := dial(t, c.gws[0].Addr(), '\n', "a")
	aid, bid := a.signUpWithPeer("alice", "bob", "pw")
	b := dial(t, c.gws[1].Addr(), '\n', "b")
	b.login(bid, "pw")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.gws[1].Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if f := b.recv(); f.num("errno") != 113 {
		t.Fatalf("bob was told %v, want errno 113", f)
	}
	b2 := dial(t, c.gws[0].Addr(), '\n', "b2")
	b2.login(bid, "pw")
	a.chatTo(b2, bid, "you moved")
	b2.chatTo(a, aid, "yes")
}

// TestDialectChosenAtLogin: the dialect field overrides the framing; the
// terminator stays the one the connection uses.
func TestDialectChosenAtLogin(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	full := dial(t, c.gws[0].Addr(), '\n', "full")
	aid := full.register("alice", "pw")
	bid := full.register("bob", "pw")
	full.send(frame{"msgid": 1, "id": aid, "password": "pw"})
	full.expect(2)
	full.send(chat(bid, "queued"))
	full.expect(14)

	// bob on a newline connection asks for the legacy dialect: offline
	// messages come as strings in the ack, chats get no reply.
	leg := dial(t, c.gws[1].Addr(), '\n', "leg")
	ack := leg.login(bid, "pw", "dialect", "legacy")
	off, _ := ack["offlinemsg"].([]any)
	if len(off) != 1 || !strings.Contains(off[0].(string), `"msg":"queued"`) {
		t.Fatalf("legacy ack over newline = %v", ack)
	}
	leg.send(chat(aid, "no reply expected"))
	leg.quiet(150 * time.Millisecond)
	if got := full.expect(6); got.str("msg") != "no reply expected" {
		t.Fatalf("alice got %v", got)
	}

	// a NUL-framed connection may ask for the full dialect.
	nul := dial(t, c.gws[0].Addr(), 0, "nul")
	cid := nul.register("carol", "pw")
	ack = nul.login(cid, "pw", "dialect", "full")
	if _, ok := ack["pending"]; !ok {
		t.Fatalf("full ack over NUL = %v", ack)
	}
	nul.send(chat(aid, "from nul"))
	if r := nul.expect(14); r.num("errno") != 0 {
		t.Fatalf("reply = %v", r)
	}
	full.expect(6)
	nul.send(frame{"msgid": 1, "id": cid, "password": "pw", "dialect": "klingon"})
	if f := nul.expect(2); f.num("errno") != 101 {
		t.Fatalf("bad dialect: %v", f)
	}
}

// TestLegacyLoginAckStaysSmall: the original client reads one 1024-byte
// buffer. Offline messages beyond what fits go out as pushes, each frame
// ended by NUL, and all count as delivered once written.
func TestLegacyLoginAckStaysSmall(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	full := dial(t, c.gws[0].Addr(), '\n', "full")
	_, bid := full.signUpWithPeer("alice", "bob", "pw")
	const n = 30
	for i := 1; i <= n; i++ {
		full.send(chat(bid, fmt.Sprintf("message number %02d", i)))
		full.expect(14)
	}
	leg := dial(t, c.gws[1].Addr(), 0, "leg")
	leg.send(frame{"msgid": 1, "id": bid, "password": "pw"})
	raw, err := leg.recvRaw(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) >= 1024 {
		t.Fatalf("legacy login ack is %d bytes", len(raw))
	}
	var ack struct {
		Offline []string `json:"offlinemsg"`
	}
	if err := json.Unmarshal([]byte(raw), &ack); err != nil {
		t.Fatal(err)
	}
	got := len(ack.Offline)
	if got == 0 || got >= n {
		t.Fatalf("%d messages in the ack", got)
	}
	for i := got + 1; i <= n; i++ {
		if f := leg.expect(6); f.str("msg") != fmt.Sprintf("message number %02d", i) {
			t.Fatalf("push %d: %v", i, f)
		}
	}
	// Written counts as delivered: a new legacy login gets nothing again.
	leg.send(frame{"msgid": 3})
	leg.send(frame{"msgid": 11})
	leg.expect(12)
	eventually.NoError(t, 5*time.Second, func() error {
		leg.send(frame{"msgid": 1, "id": bid, "password": "pw"})
		f := leg.expect(2)
		leg.send(frame{"msgid": 3})
		leg.send(frame{"msgid": 11})
		leg.expect(12)
		if f["offlinemsg"] != nil {
			return errors.New("legacy messages were not acknowledged once written")
		}
		return nil
	})
}

// TestLostKickIsReconciled: a newer login elsewhere whose kick never reached
// this gateway (published while it was reconnecting to NATS) is noticed when
// the gateway reconciles its sessions after the reconnect.
func TestLostKickIsReconciled(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	a := dial(t, c.gws[0].Addr(), '\n', "a")
	aid := a.signUp("alice", "pw")
	b := dial(t, c.gws[0].Addr(), '\n', "b")
	b.signUp("bob", "pw")
	// The lost kick: the user service records a newer session for alice,
	// and nothing tells the gateway.
	if _, err := c.db.ExecContext(context.Background(), "UPDATE sessions SET session_id = 'replaced-elsewhere' WHERE user_id = ?", aid); err != nil {
		t.Fatal(err)
	}
	a.send(frame{"msgid": 11})
	a.expect(12) // nothing happened yet
	if err := c.gwConns[0].ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	if f := a.expect(15); f.num("errno") != 108 {
		t.Fatalf("alice: %v", f)
	}
	if _, err := a.recvRaw(2 * time.Second); err == nil {
		t.Fatal("replaced connection stayed open")
	}
	b.send(frame{"msgid": 11})
	b.expect(12) // bob's session is recorded: untouched
	b.send(frame{"msgid": 18, "reqid": 1})
	if r := b.expect(14); r.num("errno") != 0 {
		t.Fatalf("bob after reconcile: %v", r)
	}
}

// TestMassDisconnectReleasesEverySession: many clients of one gateway
// disconnecting at once all get their sessions released (batched), so under
// the reject policy every one of them can log in again elsewhere.
func TestMassDisconnectReleasesEverySession(t *testing.T) {
	c := newCluster(t, clusterOpts{policy: "reject"})
	const n = 200
	reg := dial(t, c.gws[0].Addr(), '\n', "reg")
	ids := make([]int64, n)
	conns := make([]*client, n)
	for i := range n {
		ids[i] = reg.register(fmt.Sprint("user", i), "pw")
		conns[i] = dial(t, c.gws[0].Addr(), '\n', fmt.Sprint("c", i))
		conns[i].login(ids[i], "pw")
	}
	for _, cl := range conns {
		cl.conn.Close()
	}
	again := dial(t, c.gws[1].Addr(), '\n', "again")
	for i, id := range ids {
		eventually.NoError(t, 10*time.Second, func() error {
			again.send(frame{"msgid": 1, "id": id, "password": "pw"})
			f := again.expect(2)
			if f.num("errno") != 0 {
				return fmt.Errorf("user %d still logged in after disconnecting", i)
			}
			again.ok(frame{"msgid": 3})
			return nil
		})
	}
}

// TestResumeWithToken: a client whose connection dropped logs in again on
// another gateway with its resume token instead of its password, gets what
// it missed and a new token (the one it used stops working); an explicit
// logout revokes the token.
func TestResumeWithToken(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	a := dial(t, c.gws[0].Addr(), '\n', "a")
	aid := a.register("alice", "pw")
	bid := a.register("bob", "pw")
	ack := a.login(aid, "pw")
	token := ack.str("token")
	if len(token) != 43 {
		t.Fatalf("login ack without a resume token: %v", ack)
	}
	a.conn.Close()
	b := dial(t, c.gws[1].Addr(), '\n', "b")
	b.login(bid, "pw")
	b.ok(chat(aid, "while you were away"))

	a2 := dial(t, c.gws[1].Addr(), '\n', "a2")
	a2.send(frame{"msgid": 1, "id": aid, "token": token})
	f := a2.expect(2)
	if f.num("errno") != 0 || len(f.str("token")) != 43 || f.str("token") == token || f.num("pending") != 1 {
		t.Fatalf("resume: %v", f)
	}
	used, token := token, f.str("token")
	if got := a2.expect(6); got.str("msg") != "while you were away" {
		t.Fatalf("after resume: %v", got)
	}
	// The token used is spent.
	y := dial(t, c.gws[0].Addr(), '\n', "y")
	y.send(frame{"msgid": 1, "id": aid, "token": used})
	if f := y.expect(2); f.num("errno") != 1 {
		t.Fatalf("the used token: %v", f)
	}
	// Someone else's id with alice's token: refused like a wrong password.
	x := dial(t, c.gws[0].Addr(), '\n', "x")
	x.send(frame{"msgid": 1, "id": bid, "token": token})
	if f := x.expect(2); f.num("errno") != 1 {
		t.Fatalf("foreign token: %v", f)
	}
	// LOGINOUT revokes it.
	a2.ok(frame{"msgid": 3})
	a2.send(frame{"msgid": 1, "id": aid, "token": token})
	if f := a2.expect(2); f.num("errno") != 1 {
		t.Fatalf("token after logout: %v", f)
	}
	a2.login(aid, "pw") // the password still works
}
