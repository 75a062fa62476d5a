package chatclient

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/faultproxy"
)

// These tests came from a review of the client; each failed before its fix.

// fakeGW is a scripted full-dialect gateway, for what a real one does only
// rarely (skipped seqs, late acks, a kick right after an answer).
type fakeGW struct {
	addr   string
	logins atomic.Int64
	mu     sync.Mutex
	acks   []int64
	// onLogin answers a LOGIN, onChat (if not nil) a chat (msgid 6): w
	// writes frames, in one write.
	onLogin, onChat func(req map[string]any, w func(...any))
	close           func() // the listener and every connection
}

func newFakeGW(t *testing.T, onLogin func(req map[string]any, w func(...any))) *fakeGW {
	return newFakeGWChat(t, onLogin, nil)
}

// newFakeGWChat is newFakeGW with chats answered by onChat.
func newFakeGWChat(t *testing.T, onLogin, onChat func(req map[string]any, w func(...any))) *fakeGW {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGW{addr: ln.Addr().String(), onLogin: onLogin, onChat: onChat}
	var conns sync.Map
	var once sync.Once
	g.close = func() {
		once.Do(func() {
			ln.Close()
			conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		})
	}
	t.Cleanup(g.close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			go func() {
				defer c.Close()
				var wmu sync.Mutex
				w := func(vs ...any) {
					var b []byte
					for _, v := range vs {
						j, _ := json.Marshal(v)
						b = append(append(b, j...), '\n')
					}
					wmu.Lock()
					c.Write(b)
					wmu.Unlock()
				}
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					var req map[string]any
					json.Unmarshal(sc.Bytes(), &req)
					switch req["msgid"].(float64) {
					case 1:
						g.logins.Add(1)
						g.onLogin(req, w)
					case 6:
						if g.onChat != nil {
							g.onChat(req, w)
							continue
						}
						w(map[string]any{"msgid": 14, "re": req["msgid"], "errno": 0, "reqid": req["reqid"]})
					case 13:
						g.mu.Lock()
						g.acks = append(g.acks, int64(req["seq"].(float64)))
						g.mu.Unlock()
						if id, ok := req["reqid"]; ok {
							w(map[string]any{"msgid": 14, "re": 13, "errno": 0, "reqid": id})
						}
					default:
						w(map[string]any{"msgid": 14, "re": req["msgid"], "errno": 0, "reqid": req["reqid"]})
					}
				}
			}()
		}
	}()
	return g
}

func loginAck(req map[string]any, last int64) map[string]any {
	return map[string]any{"msgid": 2, "errno": 0, "id": req["id"], "name": "bob", "errmsg": "",
		"token": "tok", "lastseq": last, "pending": 0, "friends": []any{}, "groups": []any{}, "reqid": req["reqid"]}
}

func push(seq int64) map[string]any {
	return map[string]any{"msgid": 6, "id": 1, "name": "alice", "msg": fmt.Sprintf("m%d", seq),
		"time": "t", "mid": fmt.Sprintf("mid%d", seq), "seq": seq}
}

// A seq the server skipped (it does so for an undecodable or pruned inbox
// entry, see gateway deliver.go) makes the client reconnect forever: every
// replay has the same gap, nothing after it is ever shown.
func TestSkippedSeqIsAccepted(t *testing.T) {
	inbox := []int64{1, 2, 4, 5} // 3 was skipped by the server
	g := newFakeGW(t, func(req map[string]any, w func(...any)) {
		last, _ := req["lastseq"].(float64)
		w(loginAck(req, int64(last)))
		for _, s := range inbox {
			if s > int64(last) {
				w(push(s))
			}
		}
	})
	c := newClient(t, g.addr)
	c.login(7)
	c.waitTexts("m1", "m2", "m4", "m5")
	if n := g.logins.Load(); n != 1 {
		t.Errorf("the client logged in %d times", n)
	}
}

// Login gives up after its ctx, but a LOGIN_ACK that comes later still
// installs the session: the caller was told the login failed, yet the client
// is logged in (and a new Login says "already logged in").
func TestLateLoginAckIsRefused(t *testing.T) {
	g := newFakeGW(t, func(req map[string]any, w func(...any)) {
		time.Sleep(500 * time.Millisecond)
		w(loginAck(req, 0))
		w(push(1))
	})
	c := newClient(t, g.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err := c.Login(ctx, 7, "pw")
	cancel()
	if err == nil {
		t.Fatal("login did not time out")
	}
	t.Logf("Login returned %v", err)
	time.Sleep(time.Second) // the late ack comes meanwhile
	if c.LoggedIn() || len(c.rec.texts()) > 0 {
		t.Fatalf("Login failed with %v but the client is logged in (shown %q)", err, c.rec.texts())
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Login(ctx, 7, "pw"); err != nil || !c.LoggedIn() {
		t.Fatalf("a second login: %v", err)
	}
}

// The loginout's result is delivered before the session is ended.
func TestLogoutResultAfterSessionEnd(t *testing.T) {
	g := newFakeGW(t, func(req map[string]any, w func(...any)) { w(loginAck(req, 0)) })
	c := newClient(t, g.addr)
	c.login(7)
	cmd, _ := ParseCommand("loginout")
	ch := make(chan bool, 1)
	c.Submit(cmd, func(r Result) { ch <- c.LoggedIn() })
	if <-ch {
		t.Errorf("when loginout's result is delivered the client is still logged in (a Login right then says already logged in)")
	}
}

// Run finishes the outbox with c.mu held: a done callback that asks the
// client anything deadlocks Run.
func TestRunFinishesOutboxUnlocked(t *testing.T) {
	addr := startSystem(t)
	px := faultproxy.New(t, addr)
	rec := &recorder{}
	c := New(testConfig(px.Addr()), rec, testLogger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	tc := &testClient{Client: c, t: t, rec: rec}
	id := tc.register("bob")
	tc.login(id)
	px.Down()
	for {
		c.mu.Lock()
		cur := c.cur
		c.mu.Unlock()
		if cur == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd, _ := ParseCommand("friends")
	c.Submit(cmd, func(r Result) { _ = c.Queued() })
	cancel()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Errorf("Run deadlocked finishing the outbox (done callback called with c.mu held)")
	}
}

// A sender's extra field of an unexpected type passes through the gateway
// into the push; the recipient fails to decode it, drops the connection,
// resumes, gets the same push again: it never shows anything again.
func TestOddFieldsInAPushAreHarmless(t *testing.T) {
	addr := startSystem(t)
	a, b := newClient(t, addr), newClient(t, addr)
	a.signUp("alice")
	bid := b.signUp("bob")
	cmd, _ := ParseCommand(fmt.Sprintf("chat:%d:poison", bid))
	cmd.req["errno"] = "boom" // any client may add fields; they reach the recipient
	if r := a.Do(context.Background(), cmd); !r.OK() {
		t.Fatalf("poison chat: %+v", r)
	}
	a.do(fmt.Sprintf("chat:%d:after", bid))
	b.waitTexts("poison", "after")
	b.rec.mu.Lock()
	n := len(b.rec.conns)
	var last error
	if n > 0 {
		last = b.rec.conns[n-1].Err
	}
	b.rec.mu.Unlock()
	t.Logf("bob shown %q; %d connection events; last error: %v", b.rec.texts(), n, last)
	if len(b.rec.texts()) < 2 || n != 1 {
		t.Errorf("bob shows %q with %d connection events", b.rec.texts(), n)
	}
}

// Messages shown between the ack that loginout sends and the server's
// processing of LOGINOUT are never acknowledged: the next login shows them
// again.
func TestLogoutWhileMessagesArrive(t *testing.T) {
	addr := startSystem(t)
	a, b := newClient(t, addr), newClient(t, addr)
	a.signUp("alice")
	bid := b.signUp("bob")
	const n = 600
	go func() {
		for i := range n {
			cmd, _ := ParseCommand(fmt.Sprintf("chat:%d:m%d", bid, i))
			a.Submit(cmd, nil)
		}
	}()
	for len(b.rec.texts()) < 100 {
		time.Sleep(time.Millisecond)
	}
	b.do("loginout")
	seen, _, maxSeq := b.rec.shown()
	b2 := newClient(t, addr)
	s := b2.login(bid)
	time.Sleep(2 * time.Second)
	dup := b2.rec.reshown(seen)
	t.Logf("bob showed up to seq %d before loginout; new login pending=%d, re-shown %d", maxSeq, s.Pending, dup)
	if dup > 0 {
		t.Errorf("%d message(s) shown before loginout were shown again after the next login", dup)
	}
}

// Loginout right after a login with a backlog: the gateway handles the
// ack and LOGINOUT only after the replay, which the client shows meanwhile;
// the ack carries the seq shown when loginout was sent, so the rest of the
// replay is shown again at the next login.
func TestLogoutDuringReplay(t *testing.T) {
	addr := startSystem(t)
	a, b := newClient(t, addr), newClient(t, addr)
	aid, bid := a.register("alice"), b.register("bob")
	a.login(aid)
	const n = 800
	for i := range n {
		cmd, _ := ParseCommand(fmt.Sprintf("chat:%d:m%d", bid, i))
		a.Submit(cmd, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	s := b.login(bid)
	b.do("loginout")
	seen, shown, _ := b.rec.shown()
	b2 := newClient(t, addr)
	s2 := b2.login(bid)
	time.Sleep(3 * time.Second)
	dup := b2.rec.reshown(seen)
	t.Logf("first login pending=%d, shown %d before loginout answered; next login pending=%d, re-shown %d", s.Pending, shown, s2.Pending, dup)
	if dup > 0 {
		t.Errorf("%d message(s) shown before loginout were shown again after the next login", dup)
	}
}

// The server answers a chat and then kicks the session: the chat was
// stored, but the client reports it as not sent (endSession finishes the
// outbox before sendLoop pops the answered command).
func TestKickAfterAnswerKeepsResult(t *testing.T) {
	bad := 0
	for i := 0; i < 20; i++ {
		g := newFakeGWChat(t, func(req map[string]any, w func(...any)) { w(loginAck(req, 0)) },
			func(req map[string]any, w func(...any)) {
				w(map[string]any{"msgid": 14, "re": 6, "errno": 0, "mid": "m1", "reqid": req["reqid"]},
					map[string]any{"msgid": 15, "errno": 108, "errmsg": "logged in elsewhere"})
			})
		c := newClient(t, g.addr)
		c.login(7)
		cmd, _ := ParseCommand("chat:2:hi")
		r := c.Do(context.Background(), cmd)
		if r.Err != nil {
			bad++
		}
		g.close()
	}
	if bad > 0 {
		t.Errorf("%d/20 chats the server stored were reported as %v", bad, ErrNotLoggedIn)
	}
}

// leavegroup is resent after a lost reply; the resend fails with 115 though
// the user did leave.
func TestLeaveGroupResent(t *testing.T) {
	addr := startSystem(t)
	px := faultproxy.New(t, addr)
	a := newClient(t, px.Addr())
	aid := a.register("alice")
	a.login(aid)
	g := a.do("creategroup:g:").GroupID
	px.DropAfterFrame(`"msgid":19`)
	cmd, _ := ParseCommand(fmt.Sprintf("leavegroup:%d", g))
	r := a.Do(context.Background(), cmd)
	gs := a.do("groups").Groups
	t.Logf("leavegroup result %+v; groups now %d", r, len(gs))
	if !r.OK() && len(gs) == 0 {
		t.Errorf("leavegroup reported failed (errno %d) although the user left", r.Errno)
	}
}

// loginout whose reply is lost: the token is revoked, the client falls
// back to the password and logs in again, only to send loginout again.
func TestLogoutWithLostReply(t *testing.T) {
	addr := startSystem(t)
	px := faultproxy.New(t, addr)
	a := newClient(t, px.Addr())
	aid := a.register("alice")
	a.login(aid)
	px.DropAfterFrame(`"msgid":3`)
	r := a.do("loginout")
	t.Logf("loginout: %+v; resumed sessions: %d", r.Errno, a.rec.resumes())
	if a.rec.resumes() > 0 {
		t.Errorf("after a loginout with a lost reply the client logged in again with the password (%d)", a.rec.resumes())
	}
}
