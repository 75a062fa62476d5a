package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/logtest"
)

// The tests in this file run natter's web page (gateway/internal/webui) in
// headless Chromium against the real binaries. tools/webtest/driver.mjs
// (node + playwright-core) operates the page the way a person would and
// answers requests on a pipe; the scenarios, the terminal clients and the
// processes are here. They need node (20 or later), Chromium
// (NATTER_CHROMIUM, else chromium on PATH) and tools/webtest/node_modules
// (`npm ci` there; the test runs it when it is missing). Without them the
// test is skipped, except with CI=true, where it fails. Screenshots go to
// NATTER_ARTIFACTS, else to a directory named in the log.

// webEnv is what the browser tests need.
type webEnv struct {
	node, chromium, dir, artifacts string
}

// browserEnv finds node, Chromium and the driver's packages, or skips the
// test (fails it with CI=true).
func browserEnv(t *testing.T) webEnv {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the browser test cannot run: %s", msg)
		}
		t.Skipf("SKIPPING THE BROWSER TESTS: %s (they need node >= 20, chromium - apt-get install chromium, or NATTER_CHROMIUM=/path - "+
			"and `npm ci` in tools/webtest; with CI=true this fails)", msg)
	}
	var env webEnv
	var err error
	if env.node, err = exec.LookPath("node"); err != nil {
		missing("node is not installed")
	}
	if p := os.Getenv("NATTER_CHROMIUM"); p != "" {
		if env.chromium, err = exec.LookPath(p); err != nil {
			missing("NATTER_CHROMIUM=%s: %v", p, err)
		}
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if env.chromium == "" {
			env.chromium, _ = exec.LookPath(name)
		}
	}
	if env.chromium == "" {
		missing("chromium is not installed")
	}
	_, file, _, _ := runtime.Caller(0)
	env.dir = filepath.Join(filepath.Dir(file), "..", "..", "webtest")
	if _, err := os.Stat(filepath.Join(env.dir, "node_modules", "playwright-core", "package.json")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			missing("tools/webtest/node_modules is missing and npm is not installed")
		}
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = env.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			missing("npm ci in tools/webtest: %v\n%s", err, out)
		}
	}
	if env.artifacts = os.Getenv("NATTER_ARTIFACTS"); env.artifacts == "" {
		env.artifacts, err = os.MkdirTemp("", "natter-web-artifacts-")
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(env.artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", env.artifacts)
	return env
}

// browser is a running driver.mjs: one headless Chromium, a browser
// context per user.
type browser struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     io.WriteCloser
	lines  chan string
	stderr *logtest.Buffer
	done   chan error
	mu     sync.Mutex
	id     int
}

func startBrowser(t *testing.T, env webEnv) *browser {
	t.Helper()
	b := &browser{t: t, lines: make(chan string, 16), stderr: &logtest.Buffer{}, done: make(chan error, 1)}
	b.cmd = exec.Command(env.node, "driver.mjs")
	b.cmd.Dir = env.dir
	b.cmd.Env = append(os.Environ(), "NATTER_CHROMIUM="+env.chromium, "NATTER_ARTIFACTS="+env.artifacts)
	b.cmd.Stderr = b.stderr
	var err error
	if b.in, err = b.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			b.lines <- sc.Text()
		}
		close(b.lines)
		b.done <- b.cmd.Wait()
	}()
	t.Cleanup(func() {
		b.in.Close() // the driver closes Chromium and exits
		select {
		case <-b.done:
		case <-time.After(15 * time.Second):
			b.cmd.Process.Kill()
			<-b.done
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("driver.mjs log:\n%s", b.stderr.String())
		}
	})
	return b
}

// do runs op with args in the browser and decodes its result into result
// (unless nil); a failed op fails t with the driver's log.
func (b *browser) do(t *testing.T, op string, args map[string]any, result any) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.id++
	req, _ := json.Marshal(map[string]any{"id": b.id, "op": op, "args": args})
	if _, err := b.in.Write(append(req, '\n')); err != nil {
		t.Fatalf("browser %s: %v\n%s", op, err, b.stderr.String())
	}
	var line string
	select {
	case l, ok := <-b.lines:
		if !ok {
			t.Fatalf("browser %s: the driver exited\n%s", op, b.stderr.String())
		}
		line = l
	case <-time.After(90 * time.Second):
		t.Fatalf("browser %s: no answer in 90 s\n%s", op, b.stderr.String())
	}
	var resp struct {
		ID     int             `json:"id"`
		OK     bool            `json:"ok"`
		Error  string          `json:"error"`
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal([]byte(line), &resp); err != nil || resp.ID != b.id {
		t.Fatalf("browser %s: bad answer %q (%v)\n%s", op, line, err, b.stderr.String())
	}
	if !resp.OK {
		t.Fatalf("browser %s %v: %s (the driver's log follows at the end)", op, args, resp.Error)
	}
	if result != nil {
		if err := json.Unmarshal(resp.Result, result); err != nil {
			t.Fatalf("browser %s: result %s: %v", op, resp.Result, err)
		}
	}
}

// webMsg is a message as a page shows it.
type webMsg struct {
	From     string `json:"from"`
	Text     string `json:"text"`
	Seq      int64  `json:"seq"`
	Mine     bool   `json:"mine"`
	Status   string `json:"status"`
	HTML     string `json:"html"`
	Elements int    `json:"elements"`
}

// webUser is one person with a browser.
type webUser struct {
	b    *browser
	name string
	id   int64
}

func (u *webUser) do(t *testing.T, op string, args map[string]any, result any) {
	t.Helper()
	if args == nil {
		args = map[string]any{}
	}
	args["user"] = u.name
	u.b.do(t, op, args, result)
}

// messages waits until the conversation conv ("u2", "g1") shows at least
// n messages and returns them.
func (u *webUser) messages(t *testing.T, conv string, n int) []webMsg {
	t.Helper()
	var ms []webMsg
	u.do(t, "messages", map[string]any{"conv": conv, "count": n}, &ms)
	return ms
}

// texts returns the texts of ms from others (mine=false) or the user.
func texts(ms []webMsg, mine bool) []string {
	var out []string
	for _, m := range ms {
		if m.Mine == mine {
			out = append(out, m.Text)
		}
	}
	return out
}

// noProblems fails t if the page logged errors other than those allowed
// (substrings).
func (u *webUser) noProblems(t *testing.T, allowed ...string) {
	t.Helper()
	var ps []string
	u.do(t, "problems", nil, &ps)
	for _, p := range ps {
		if !slices.ContainsFunc(allowed, func(a string) bool { return strings.Contains(p, a) }) {
			t.Errorf("%s's page: %s", u.name, p)
		}
	}
}

func (u *webUser) screenshot(t *testing.T, file string) {
	t.Helper()
	var r struct{ Path string }
	u.do(t, "screenshot", map[string]any{"file": file}, &r)
	t.Logf("screenshot %s", r.Path)
}

// webCluster is natter serve (NATS, the services and a gateway with the
// web page) and two more natter-gateway processes with the page.
type webCluster struct {
	tcp, ws string // natter serve's gateway
	gw      [2]*webGateway
}

type webGateway struct {
	tcp, ws string
	args    []string
	p       *proc
}

func startWebCluster(t *testing.T) *webCluster {
	t.Helper()
	c := &webCluster{}
	// The page may be loaded from one gateway and connect to another (its
	// ?ws= list): every port of 127.0.0.1 is an allowed origin.
	srv := startProc(t, "natter", "serve", "--listen", anyPort, "--nats-listen", anyPort, "--data", t.TempDir(), "--bcrypt-cost", "4",
		"--ws-listen", anyPort, "--ws-origins", "127.0.0.1:*", "--web", "--presence-ttl", "2s")
	c.tcp, c.ws = srv.listenAddr(logServes), srv.listenAddr(logWS)
	natsAddr := srv.listenAddr(logNATS)
	for i := range c.gw {
		g := &webGateway{}
		g.args = []string{"--nats", "nats://" + natsAddr, "--ws-origins", "127.0.0.1:*", "--web",
			"--presence-ttl", "2s", "--drain-window", "1s"}
		c.gw[i] = g
		c.start(t, i)
	}
	return c
}

// start (re)starts gateway i: first on port 0 (its addresses read from its
// log), again on the ports it got, which the browsers' pages know. Between
// the stop and the restart another process may have taken one of them
// (another test's listener, an outgoing connection): a restart that exits
// with "address already in use" is tried again, for 30 s at most, and the
// gateway's own log must show it listening on the ports it had, so that
// the process the pages reach is the one started here.
func (c *webCluster) start(t *testing.T, i int) {
	t.Helper()
	g := c.gw[i]
	if g.tcp == "" {
		g.p = startProc(t, "natter-gateway", append(g.args, "--listen", anyPort, "--ws-listen", anyPort)...)
		g.tcp, g.ws = g.p.listenAddr(logTCP), g.p.listenAddr(logWS)
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		g.p = startProc(t, "natter-gateway", append(g.args, "--listen", g.tcp, "--ws-listen", g.ws)...)
		err := g.p.listening(logTCP, logWS)
		if err == nil {
			break
		}
		if !strings.Contains(g.p.out.String(), "address already in use") || time.Now().After(deadline) {
			t.Fatalf("gateway %d restarted on %s and %s: %v\n%s", i, g.tcp, g.ws, err, g.p.out.String())
		}
		t.Logf("gateway %d: a port was taken since it stopped (%v); starting it again", i, err)
		time.Sleep(500 * time.Millisecond)
	}
	if tcp, ws := g.p.listenAddr(logTCP), g.p.listenAddr(logWS); tcp != g.tcp || ws != g.ws {
		t.Fatalf("gateway %d restarted on %s and %s, want %s and %s", i, tcp, ws, g.tcp, g.ws)
	}
}

// TestWebPage runs the web page in headless Chromium: browser users
// register, log in, become friends and chat with each other and with
// terminal clients; a group reaches browsers and `natter chat --json`; a
// browser whose gateway is killed moves to the other one and shows what
// was sent meanwhile exactly once, in order, and sends what was typed
// while it was offline once it is back.
func TestWebPage(t *testing.T) {
	env := browserEnv(t)
	start := time.Now()
	c := startWebCluster(t)
	b := startBrowser(t, env)
	t.Logf("cluster and browser up in %v", time.Since(start).Round(time.Millisecond))

	alice := &webUser{b: b, name: "alice"}
	bob := &webUser{b: b, name: "bob"}

	friends := t.Run("FriendsAndChat", func(t *testing.T) {
		// alice on natter serve's page, bob on a natter-gateway's.
		var page struct{ Title string }
		alice.do(t, "open", map[string]any{"url": "http://" + c.ws + "/"}, &page)
		if page.Title != "natter" {
			t.Fatalf("title %q", page.Title)
		}
		bob.do(t, "open", map[string]any{"url": "http://" + c.gw[0].ws + "/"}, nil)
		var reg struct{ ID int64 }
		alice.do(t, "register", map[string]any{"name": "alice", "password": "pw-a"}, &reg)
		alice.id = reg.ID
		bob.do(t, "register", map[string]any{"name": "bob", "password": "pw-b"}, &reg)
		bob.id = reg.ID
		if alice.id <= 0 || bob.id <= 0 || alice.id == bob.id {
			t.Fatalf("ids %d and %d", alice.id, bob.id)
		}
		alice.screenshot(t, "1-registered.png")

		var login struct{ Me, Notice string }
		alice.do(t, "login", map[string]any{"id": alice.id, "password": "wrong", "fails": true}, &login)
		if login.Notice != "Could not log in: id or password is invalid." {
			t.Errorf("a wrong password: %q", login.Notice)
		}
		alice.do(t, "login", map[string]any{"id": alice.id, "password": "pw-a"}, &login)
		if want := fmt.Sprintf("alice (id %d)", alice.id); login.Me != want {
			t.Fatalf("alice's page says %q, want %q", login.Me, want)
		}
		bob.do(t, "login", map[string]any{"id": bob.id, "password": "pw-b"}, nil)

		var added struct{ Notice string }
		alice.do(t, "addFriend", map[string]any{"id": 99999, "fails": true}, &added)
		if added.Notice != "Failed: no such user." {
			t.Errorf("adding an unknown user: %q", added.Notice)
		}
		alice.do(t, "addFriend", map[string]any{"id": bob.id}, &added)
		if !strings.Contains(added.Notice, fmt.Sprintf("bob (id %d) is now your friend", bob.id)) {
			t.Fatalf("add friend: %q", added.Notice)
		}
		alice.do(t, "friend", map[string]any{"id": bob.id, "state": "online"}, nil)

		ua, ub := fmt.Sprint("u", alice.id), fmt.Sprint("u", bob.id)
		alice.do(t, "send", map[string]any{"conv": ub, "text": "hi bob", "wait": true}, nil)
		got := bob.messages(t, ua, 1)
		if len(got) != 1 || got[0].From != "alice" || got[0].Text != "hi bob" || got[0].Seq != 1 {
			t.Fatalf("bob shows %+v", got)
		}
		var peer struct{ Text string }
		bob.do(t, "peer", map[string]any{"conv": ua}, &peer)
		if !strings.Contains(peer.Text, "1 new") {
			t.Errorf("bob's button for alice says %q, want an unread count", peer.Text)
		}
		// bob's friend list learns alice (the friendship is mutual).
		bob.do(t, "friend", map[string]any{"id": alice.id, "state": "online"}, nil)
		bob.do(t, "send", map[string]any{"conv": ua, "text": "hi alice 👋", "wait": true}, nil)
		got = alice.messages(t, ub, 2)
		if len(got) != 2 || !got[0].Mine || got[0].Status != "sent" || got[1].Text != "hi alice 👋" || got[1].From != "bob" {
			t.Fatalf("alice shows %+v", got)
		}

		// Presence, and the messages that wait while bob is away.
		bob.do(t, "logout", nil, nil)
		alice.do(t, "friend", map[string]any{"id": bob.id, "state": "offline"}, nil)
		for _, m := range []string{"while you were away 1", "while you were away 2"} {
			alice.do(t, "send", map[string]any{"conv": ub, "text": m, "wait": true}, nil)
		}
		bob.do(t, "login", map[string]any{"id": bob.id, "password": "pw-b"}, &login)
		if login.Notice != "2 messages arrived while you were away." {
			t.Errorf("bob's notice at login: %q", login.Notice)
		}
		got = bob.messages(t, ua, 2)
		if !slices.Equal(texts(got, false), []string{"while you were away 1", "while you were away 2"}) {
			t.Fatalf("bob's replay: %+v", got)
		}
		bob.screenshot(t, "2-logged-in.png")
		alice.do(t, "friend", map[string]any{"id": bob.id, "state": "online"}, nil)

		// carol, a raw TCP full-dialect client, chats with alice.
		carol := dial(t, waitListening(t, c.tcp), '\n', "carol")
		cid := carol.signUp("carol", "pw-c")
		carol.ok(frame{"msgid": 7, "friendid": alice.id})
		carol.ok(frame{"msgid": 6, "toid": alice.id, "msg": "hello from TCP", "reqid": 1})
		uc := fmt.Sprint("u", cid)
		got = alice.messages(t, uc, 1)
		if len(got) != 1 || got[0].From != "carol" || got[0].Text != "hello from TCP" {
			t.Fatalf("alice shows %+v from carol", got)
		}
		alice.do(t, "friend", map[string]any{"id": cid, "state": "online"}, nil)
		alice.do(t, "send", map[string]any{"conv": uc, "text": "hi carol", "wait": true}, nil)
		if f := carol.expect(6); f.str("msg") != "hi carol" || f.num("id") != alice.id || f.str("name") != "alice" {
			t.Fatalf("carol got %v", f)
		}
		// Message text is never HTML.
		evil := `<img src=x onerror="document.title='pwned'"><b>bold</b> & "quotes"`
		carol.ok(frame{"msgid": 6, "toid": alice.id, "msg": evil, "reqid": 2})
		got = alice.messages(t, uc, 3)
		if m := got[2]; m.Text != evil || m.Elements != 0 {
			t.Fatalf("alice shows %+v for %q", m, evil)
		}
		// bob logs in somewhere else: his first page's session ends, and
		// it does not come back by itself.
		elsewhere := &webUser{b: b, name: "bob-elsewhere"}
		elsewhere.do(t, "open", map[string]any{"url": "http://" + c.ws + "/"}, nil)
		elsewhere.do(t, "login", map[string]any{"id": bob.id, "password": "pw-b"}, nil)
		var sess struct {
			LoggedIn bool
			Notice   string
		}
		bob.do(t, "session", map[string]any{"loggedIn": false}, &sess)
		if sess.Notice != "This account logged in somewhere else." {
			t.Errorf("bob's first page after a login elsewhere says %q", sess.Notice)
		}
		bob.do(t, "login", map[string]any{"id": bob.id, "password": "pw-b"}, nil)
		elsewhere.do(t, "session", map[string]any{"loggedIn": false}, nil)
		elsewhere.do(t, "close", nil, nil)

		var title struct{ Title string }
		alice.do(t, "title", nil, &title)
		if title.Title != "natter" {
			t.Fatalf("the page's title is %q after showing %q", title.Title, evil)
		}

		alice.do(t, "select", map[string]any{"conv": ub}, nil)
		alice.screenshot(t, "3-conversation.png")
		var bad []string
		alice.do(t, "a11y", nil, &bad)
		for _, p := range bad {
			t.Errorf("alice's page: %s", p)
		}
		alice.noProblems(t)
		bob.noProblems(t)
	})

	t.Run("Group", func(t *testing.T) {
		if !friends {
			t.Skip("FriendsAndChat failed")
		}
		var g struct {
			ID     int64
			Notice string
		}
		alice.do(t, "createGroup", map[string]any{"name": "hikers", "desc": "weekend trips"}, &g)
		if g.ID <= 0 || !strings.Contains(g.Notice, fmt.Sprintf("its id is %d", g.ID)) {
			t.Fatalf("create group: %+v", g)
		}
		bob.do(t, "joinGroup", map[string]any{"id": g.ID}, nil)

		// erin uses the terminal client, on another gateway.
		reg := startChat(t, "erin", []string{"NATTER_PASSWORD=pw-e", "NATTER_CHAT_ADDR=" + c.gw[1].tcp}, "--register", "erin", "--json")
		if err := reg.exit(); err != nil {
			t.Fatalf("natter chat --register: %v", err)
		}
		eid := fmt.Sprint(firstEvent(t, reg.out.String(), "registered")["id"])
		erin := startChat(t, "erin", []string{"NATTER_PASSWORD=pw-e"}, "--addr", c.gw[1].tcp, "--user", eid, "--json")
		erin.waitFor(`"event":"login"`)
		erin.typeLine(fmt.Sprintf("addgroup:%d", g.ID))
		erin.waitFor(fmt.Sprintf(`"command":"addgroup:%d"`, g.ID))

		gc := fmt.Sprint("g", g.ID)
		alice.do(t, "send", map[string]any{"conv": gc, "text": "hello hikers", "wait": true}, nil)
		erin.waitFor(`"msg":"hello hikers"`)
		got := bob.messages(t, gc, 1)
		if len(got) != 1 || got[0].Text != "hello hikers" || got[0].From != "alice" {
			t.Fatalf("bob shows %+v in the group", got)
		}
		erin.typeLine(fmt.Sprintf("groupchat:%d:hi from the terminal", g.ID))
		for _, u := range []*webUser{alice, bob} {
			got := u.messages(t, gc, 2)
			if len(got) != 2 || got[1].Text != "hi from the terminal" || got[1].From != "erin" {
				t.Fatalf("%s shows %+v in the group", u.name, got)
			}
		}
		bob.do(t, "send", map[string]any{"conv": gc, "text": "bob here", "wait": true}, nil)
		erin.waitFor(`"msg":"bob here"`)
		alice.messages(t, gc, 3)
		alice.do(t, "select", map[string]any{"conv": gc}, nil)
		alice.screenshot(t, "4-group.png")

		// bob leaves: the group goes from his page, and he gets no more of it.
		var left struct{ Notice string }
		bob.do(t, "leaveGroup", map[string]any{"id": g.ID}, &left)
		if left.Notice != "You left the group hikers." {
			t.Errorf("bob's notice: %q", left.Notice)
		}
		alice.do(t, "send", map[string]any{"conv": gc, "text": "after bob left", "wait": true}, nil)
		erin.waitFor(`"msg":"after bob left"`)
		for _, e := range jsonEvents(t, erin.out.String()) {
			if e["event"] == "result" && e["ok"] != true {
				t.Errorf("erin's command failed: %v", e)
			}
		}
		alice.noProblems(t)
		bob.noProblems(t)
	})

	t.Run("KilledGateway", func(t *testing.T) {
		// frank's page comes from gateway 0 and knows gateway 1 too.
		frank := &webUser{b: b, name: "frank"}
		url := fmt.Sprintf("http://%s/?ws=ws://%s/ws,ws://%s/ws", c.gw[0].ws, c.gw[0].ws, c.gw[1].ws)
		frank.do(t, "open", map[string]any{"url": url}, nil)
		var reg struct{ ID int64 }
		frank.do(t, "register", map[string]any{"name": "frank", "password": "pw-f"}, &reg)
		frank.id = reg.ID
		frank.do(t, "login", map[string]any{"id": frank.id, "password": "pw-f"}, nil)

		grace := dial(t, waitListening(t, c.tcp), '\n', "grace")
		gid := grace.signUp("grace", "pw-g")
		grace.ok(frame{"msgid": 7, "friendid": frank.id})
		ug := fmt.Sprint("u", gid)
		var want []string
		send := func(n int) {
			t.Helper()
			for range n {
				m := fmt.Sprintf("m%d", len(want))
				grace.ok(frame{"msgid": 6, "toid": frank.id, "msg": m})
				want = append(want, m)
			}
		}
		// shows waits until frank's page shows every message grace sent
		// (and mine of his own), and checks they come once each, in order.
		shows := func(mine int) []webMsg {
			t.Helper()
			all := frank.messages(t, ug, len(want)+mine)
			var n int
			for _, m := range all {
				if m.Mine {
					continue
				}
				if n >= len(want) || m.Text != want[n] || m.Seq != int64(n+1) || m.From != "grace" {
					t.Fatalf("frank's page shows %+v as message %d; want %q, each once, in order; all:\n%+v", m, n, want, all)
				}
				n++
			}
			return all
		}
		send(5)
		shows(0)

		// Gateway 0 dies under frank: his page moves to gateway 1.
		c.gw[0].p.stop(syscall.SIGKILL)
		send(15)
		var conn struct {
			State, Text string
			History     []string
		}
		frank.do(t, "conn", map[string]any{"state": "back", "timeout": 30000}, &conn)
		if !slices.ContainsFunc(conn.History, func(s string) bool { return strings.Contains(s, " offline: ") }) ||
			!slices.ContainsFunc(conn.History, func(s string) bool { return strings.Contains(s, " back: Back online") }) {
			t.Errorf("frank's page did not show offline, then back online: %q", conn.History)
		}
		t.Logf("frank's connection states: %q", conn.History)
		send(1)
		shows(0)

		// Gateway 1 is drained too (RECONNECT): no gateway is left, and
		// frank's page says so. What he types now waits.
		c.gw[1].p.stop(syscall.SIGTERM)
		frank.do(t, "conn", map[string]any{"state": "offline"}, &conn)
		if !slices.ContainsFunc(conn.History, func(s string) bool { return strings.Contains(s, "going away") }) {
			t.Errorf("frank's page did not show the RECONNECT of the drained gateway: %q", conn.History)
		}
		frank.do(t, "send", map[string]any{"conv": ug, "text": "typed while offline"}, nil)
		all := shows(1)
		if m := all[len(all)-1]; !m.Mine || m.Status != "queued" {
			t.Fatalf("frank's message typed while offline: %+v", m)
		}
		send(3) // grace is on natter serve's gateway
		frank.do(t, "conn", nil, &conn)
		if !strings.Contains(conn.Text, "1 waiting to be sent") {
			t.Errorf("frank's page, offline with a message queued, says %q", conn.Text)
		}
		frank.screenshot(t, "5-offline.png")

		// Gateway 0 comes back: frank's page resumes, shows what came
		// meanwhile, and sends what he typed, once.
		c.start(t, 0)
		frank.do(t, "conn", map[string]any{"state": "back", "timeout": 30000}, nil)
		if f := grace.expect(6); f.str("msg") != "typed while offline" || f.num("id") != frank.id {
			t.Fatalf("grace got %v", f)
		}
		send(1)
		shows(1)
		frank.do(t, "messages", map[string]any{"conv": ug, "count": len(want) + 1, "allSent": true}, nil)
		frank.screenshot(t, "6-back-online.png")
		// Once: nothing but presence notices follows for grace.
		for {
			s, err := grace.recvRaw(500 * time.Millisecond)
			if err != nil {
				break
			}
			if !strings.Contains(s, `"msgid":16`) {
				t.Fatalf("grace got %s after frank's one message", s)
			}
		}
		// The only errors: the connections refused while gateways were down.
		frank.noProblems(t, "WebSocket connection to")
	})
}
