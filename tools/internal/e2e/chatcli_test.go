package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/logtest"
)

// The tests in this file drive the real `natter chat` binary through pipes.

// chatProc is a running `natter chat`.
type chatProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *logtest.Buffer
	stderr *logtest.Buffer
	done   chan error
	from   int // waitFor looks at the output after this offset
}

func startChat(t *testing.T, name string, env []string, args ...string) *chatProc {
	t.Helper()
	p := &chatProc{t: t, name: name, out: &logtest.Buffer{}, stderr: &logtest.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(filepath.Join(binaries(t), "natter"), append([]string{"chat"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.stderr
	p.cmd.Env = append(os.Environ(), env...)
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start natter chat: %v", err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s's natter chat output:\n%s\nstderr:\n%s", name, p.out.String(), p.stderr.String())
		}
	})
	return p
}

// typeLine writes one line to the client's input.
func (p *chatProc) typeLine(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, s+"\n"); err != nil {
		p.t.Fatalf("%s: type %q: %v", p.name, s, err)
	}
}

// waitFor waits until the output after the last match contains s, and
// returns the output up to and including it.
func (p *chatProc) waitFor(s string) string {
	p.t.Helper()
	var got string
	eventually.NoError(p.t, 30*time.Second, func() error {
		out := p.out.String()[p.from:]
		i := strings.Index(out, s)
		if i < 0 {
			return fmt.Errorf("%s: output %q; have:\n%s", p.name, s, p.out.String())
		}
		got = out[:i+len(s)]
		p.from += i + len(s)
		return nil
	})
	return got
}

// waitMatch waits for a regular expression and returns its submatches.
func (p *chatProc) waitMatch(expr string) []string {
	p.t.Helper()
	re := regexp.MustCompile(expr)
	var m []string
	eventually.NoError(p.t, 30*time.Second, func() error {
		out := p.out.String()[p.from:]
		loc := re.FindStringSubmatchIndex(out)
		if loc == nil {
			return fmt.Errorf("%s: output matching %q; have:\n%s", p.name, expr, p.out.String())
		}
		m = re.FindStringSubmatch(out)
		p.from += loc[1]
		return nil
	})
	return m
}

// exit waits for the process to end and returns its exit error.
func (p *chatProc) exit() error {
	p.t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s: natter chat did not exit", p.name)
		return nil
	}
}

// register goes through the menu's register entry and returns the new id.
func (p *chatProc) register(name, pw string) int64 {
	p.t.Helper()
	p.waitFor("choice:")
	p.typeLine("2")
	p.typeLine(name)
	p.typeLine(pw)
	m := p.waitMatch(regexp.QuoteMeta(name) + ` register success, userid is (\d+), do not forget it!`)
	id, _ := strconv.ParseInt(m[1], 10, 64)
	return id
}

// TestChatClientMenuAndCommands runs two interactive clients against
// natter serve: register, login, chat both ways, friends, groups, errors,
// loginout back to the menu, and a new login that shows nothing twice.
func TestChatClientMenuAndCommands(t *testing.T) {
	listen := startProc(t, "natter", "serve", "--listen", anyPort, "--data", t.TempDir(), "--bcrypt-cost", "4").listenAddr(logServes)

	a := startChat(t, "alice", nil, "--addr", listen)
	b := startChat(t, "bob", nil, "--addr", listen)
	aid := a.register("alice", "secret a")
	bid := b.register("bob", "secret b")

	// A wrong password is refused with the original's message.
	a.waitFor("choice:")
	a.typeLine("1")
	a.typeLine(fmt.Sprint(aid))
	a.typeLine("wrong")
	a.waitFor("id or password is invalid!")

	for _, c := range []struct {
		p  *chatProc
		id int64
		pw string
	}{{a, aid, "secret a"}, {b, bid, "secret b"}} {
		c.p.waitFor("choice:")
		c.p.typeLine("1")
		c.p.typeLine(fmt.Sprint(c.id))
		c.p.typeLine(c.pw)
		c.p.waitFor(fmt.Sprintf("current login user => id:%d name:%s", c.id, c.p.name))
		c.p.waitFor("======================================================")
	}
	if strings.Contains(a.out.String(), "secret a") {
		t.Fatal("the password appeared in the output")
	}

	a.typeLine(fmt.Sprintf("addfriend:%d", bid))
	a.waitFor(fmt.Sprintf("[%d] is now your friend", bid))
	a.typeLine(fmt.Sprintf("chat:%d:hi bob: it's me", bid))
	a.waitFor(fmt.Sprintf("sent to [%d]", bid))
	b.waitMatch(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[` + fmt.Sprint(aid) + `\]alice said: hi bob: it's me\n`)
	b.typeLine(fmt.Sprintf("chat:%d:hi alice", aid))
	a.waitFor(fmt.Sprintf("[%d]bob said: hi alice", bid))

	a.typeLine("creategroup:hikers:weekend trips")
	gid := a.waitMatch(`created group (\d+) \(hikers\)`)[1]
	b.typeLine("addgroup:" + gid)
	b.waitFor("joined group " + gid)
	b.typeLine("groupchat:" + gid + ":hello hikers")
	a.waitFor(fmt.Sprintf("群消息[%s]:", gid))
	a.waitFor(fmt.Sprintf("[%d]bob said: hello hikers", bid))
	b.typeLine("members:" + gid)
	b.waitFor(gid + " hikers weekend trips\n")
	b.waitFor(fmt.Sprintf("%d alice online creator\n%d bob online normal\n", aid, bid))
	b.typeLine("friends")
	b.waitFor(fmt.Sprintf("%d alice online\n", aid))
	b.typeLine("groups")
	b.waitFor(gid + " hikers weekend trips\n")

	// Bad input prints the help; errors from the server are reported.
	b.typeLine("what is this")
	b.waitFor("show command list >>>")
	b.waitFor("quit : quit, format quit")
	b.typeLine("chat:99999:anyone?")
	b.waitFor("chat failed: no such user: 99999 (errno 105)")
	b.typeLine("groupchat:99999:anyone?")
	b.waitFor("groupchat failed:")

	// loginout goes back to the menu; alice sees bob go.
	b.typeLine("loginout")
	b.waitFor("logged out")
	b.waitFor("choice:")
	a.waitFor(fmt.Sprintf("friend [%d]bob is offline", bid)) // the name is known from bob's message
	a.typeLine(fmt.Sprintf("chat:%d:while you were out", bid))
	a.waitFor(fmt.Sprintf("sent to [%d]", bid))

	// Logging in again shows the new message only: what was shown before
	// was acknowledged.
	b.typeLine("1")
	b.typeLine(fmt.Sprint(bid))
	b.typeLine("secret b")
	b.waitFor("1 message(s) arrived while you were away:")
	out := b.waitFor("while you were out\n")
	if strings.Contains(out, "hi bob") {
		t.Fatalf("an acknowledged message was shown again:\n%s", out)
	}
	a.waitFor(fmt.Sprintf("friend [%d]bob is online", bid))

	// quit ends the client cleanly; end of input too.
	b.typeLine("quit")
	if err := b.exit(); err != nil {
		t.Fatalf("bob's client: %v", err)
	}
	a.stdin.Close()
	if err := a.exit(); err != nil {
		t.Fatalf("alice's client: %v", err)
	}
}

// TestChatClientScripted uses the flags for scripts: --register, --user
// with the password from the environment or a file, --send, --json.
func TestChatClientScripted(t *testing.T) {
	listen := startProc(t, "natter", "serve", "--listen", anyPort, "--data", t.TempDir(), "--bcrypt-cost", "4").listenAddr(logServes)
	env := []string{"NATTER_PASSWORD=pw", "NATTER_CHAT_ADDR=" + listen}

	reg := startChat(t, "reg", env, "--register", "alice", "--json")
	if err := reg.exit(); err != nil {
		t.Fatal(err)
	}
	aid := firstEvent(t, reg.out.String(), "registered")["id"]
	reg = startChat(t, "reg", env, "--register", "bob")
	if err := reg.exit(); err != nil {
		t.Fatal(err)
	}
	bid := reg.waitMatch(`bob register success, userid is (\d+)`)[1]

	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("pw\n"), 0o600)
	bob := startChat(t, "bob", []string{"NATTER_CHAT_ADDR=" + listen}, "--user", bid, "--password-file", pwFile, "--json")
	bob.waitFor(`"event":"login"`)

	send := startChat(t, "alice", env, "--user", fmt.Sprint(aid),
		"--send", "addfriend:"+bid, "--send", "chat:"+bid+":one", "--send", "chat:"+bid+":two, with a comma")
	if err := send.exit(); err != nil {
		t.Fatalf("alice --send: %v", err)
	}
	send.waitFor("sent to [" + bid + "]")
	bob.waitFor(`"msg":"two, with a comma"`)
	var msgs []string
	for _, e := range jsonEvents(t, bob.out.String()) {
		if e["event"] == "message" {
			msgs = append(msgs, fmt.Sprint(e["msg"]))
			if e["id"] != aid || e["name"] != "alice" || e["seq"] == nil || e["mid"] == nil {
				t.Fatalf("message event: %v", e)
			}
		}
	}
	if strings.Join(msgs, "|") != "one|two, with a comma" {
		t.Fatalf("bob's messages: %q", msgs)
	}

	// A failing command makes --send exit non-zero.
	bad := startChat(t, "alice", env, "--user", fmt.Sprint(aid), "--send", "chat:99999:nobody")
	if err := bad.exit(); err == nil {
		t.Fatal("--send with a failing command exited 0")
	}
	// No password anywhere: refused without asking (stdin is not a terminal).
	nopw := startChat(t, "nopw", []string{"NATTER_CHAT_ADDR=" + listen}, "--user", bid)
	if err := nopw.exit(); err == nil || !strings.Contains(nopw.stderr.String(), "NATTER_PASSWORD") {
		t.Fatalf("no password: %v %s", err, nopw.stderr.String())
	}

	// --json runs until interrupted, and acknowledges what it printed.
	bob.cmd.Process.Signal(os.Interrupt)
	if err := bob.exit(); err != nil {
		t.Fatalf("bob after SIGINT: %v", err)
	}
	again := startChat(t, "bob", []string{"NATTER_CHAT_ADDR=" + listen}, "--user", bid, "--password-file", pwFile, "--json")
	again.waitFor(`"event":"login"`)
	eventually.NoError(t, 10*time.Second, func() error {
		if !strings.HasSuffix(again.out.String(), "\n") {
			return errors.New("the login line")
		}
		return nil
	})
	if e := firstEvent(t, again.out.String(), "login"); e["pending"] != 0.0 {
		t.Fatalf("messages shown before SIGINT are pending again: %v", e)
	}
}

// firstEvent returns the first JSON line whose event is name.
func firstEvent(t *testing.T, out, name string) map[string]any {
	t.Helper()
	for _, e := range jsonEvents(t, out) {
		if e["event"] == name {
			return e
		}
	}
	t.Fatalf("no %s event in:\n%s", name, out)
	return nil
}

// jsonEvents parses JSON lines.
func jsonEvents(t *testing.T, out string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		evs = append(evs, e)
	}
	return evs
}

// TestChatClientSurvivesKilledGateway: bob's `natter chat --json` is on
// gateway 2 of two; alice keeps sending from gateway 1. Gateway 2 is
// killed with SIGKILL: bob's client reconnects to gateway 1, resumes with
// its token, and shows every message exactly once, in order; what bob
// typed meanwhile reaches alice exactly once.
func TestChatClientSurvivesKilledGateway(t *testing.T) {
	srv := startProc(t, "natter", "serve", "--listen", anyPort, "--nats-listen", anyPort, "--data", t.TempDir(), "--bcrypt-cost", "4")
	gw1, natsAddr := srv.listenAddr(logServes), srv.listenAddr(logNATS)
	g2 := startProc(t, "natter-gateway", "--nats", "nats://"+natsAddr, "--listen", anyPort)
	gw2 := g2.listenAddr(logTCP)

	a := dial(t, waitListening(t, gw1), '\n', "alice")
	aid, bid := a.signUpWithPeer("alice", "bob", "pw")
	bob := startChat(t, "bob", []string{"NATTER_PASSWORD=pw"},
		"--addr", gw2+","+gw1, "--user", fmt.Sprint(bid), "--json", "--max-backoff", "1s")
	bob.waitFor(`"event":"login"`)

	const n = 200
	var fromBob []frame
	for i := range n {
		if i == n/4 {
			bob.waitFor(fmt.Sprintf(`"msg":"m%d"`, i-1)) // bob is receiving on gateway 2
			g2.stop(syscall.SIGKILL)
			bob.typeLine(fmt.Sprintf("chat:%d:typed when the gateway died", aid))
		}
		a.send(frame{"msgid": 6, "toid": bid, "msg": fmt.Sprintf("m%d", i), "reqid": i})
		for {
			f := a.recv()
			switch f.num("msgid") {
			case 16:
				continue
			case 6:
				fromBob = append(fromBob, f)
				continue
			}
			if f.num("msgid") != 14 || f.num("errno") != 0 {
				t.Fatalf("send m%d: %v", i, f)
			}
			break
		}
	}
	bob.waitFor(fmt.Sprintf(`"msg":"m%d"`, n-1))
	if len(fromBob) == 0 {
		fromBob = append(fromBob, a.expect(6))
	}
	if len(fromBob) != 1 || fromBob[0].str("msg") != "typed when the gateway died" || fromBob[0].num("id") != bid {
		t.Fatalf("alice got %v", fromBob)
	}
	a.quiet(300 * time.Millisecond) // once only

	var msgs []string
	var seqs []float64
	resumed := false
	for _, e := range jsonEvents(t, bob.out.String()) {
		switch e["event"] {
		case "message":
			msgs = append(msgs, e["msg"].(string))
			seqs = append(seqs, e["seq"].(float64))
		case "connection":
			if e["up"] == true && e["resumed"] == true && e["addr"] == gw1 {
				resumed = true
			}
		}
	}
	if len(msgs) != n {
		t.Fatalf("bob shows %d messages, want %d", len(msgs), n)
	}
	for i := range msgs {
		if msgs[i] != fmt.Sprintf("m%d", i) || seqs[i] != float64(i+1) {
			t.Fatalf("message %d is %q seq %v", i, msgs[i], seqs[i])
		}
	}
	if !resumed {
		t.Fatalf("no resumed connection to gateway 1 in bob's events:\n%s", bob.out.String())
	}
}
