package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/logtest"
)

// The tests in this file run the real binaries as separate processes.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds natter, natter-gateway, natter-user and natter-offline once
// per test run.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "natter-e2e-bin")
		if buildErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		cmd := exec.Command("go", "build", "-race", "-o", binDir+"/",
			"./tools/cmd/natter", "./gateway/cmd/natter-gateway",
			"./services/user/cmd/natter-user", "./services/offline/cmd/natter-offline",
			"./services/friend/cmd/natter-friend", "./services/group/cmd/natter-group")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// unusedPort is a port nothing listens on now, for a process that cannot
// listen on port 0 and report the port it got (nginx): another process
// can take it before that process binds it, so the caller checks that
// its process is the one listening there, and starts it again on
// another port when the port was taken (startNginx).
func unusedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// heldPort is a port of 127.0.0.1 that the test holds for its whole life
// (nothing else can take it): a bound socket that does not listen, so a
// connection to it is refused, until listen makes it a listener.
type heldPort struct {
	fd   int
	addr string
}

func holdPort(t *testing.T) *heldPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	h := &heldPort{fd: fd, addr: fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)}
	t.Cleanup(func() {
		if h.fd >= 0 {
			syscall.Close(h.fd)
		}
	})
	return h
}

// refusedAddr is an address where connections are refused for the whole
// test: a port the test holds without listening on it.
func refusedAddr(t *testing.T) string { return holdPort(t).addr }

// listen turns the held port into a listener (closed with the test).
func (h *heldPort) listen(t *testing.T) net.Listener {
	t.Helper()
	if err := syscall.Listen(h.fd, 128); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(h.fd), h.addr)
	h.fd = -1
	ln, err := net.FileListener(f) // a copy of the descriptor
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// forward relays every connection ln accepts to target, until the test
// ends.
func forward(t *testing.T, ln net.Listener, target string) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	open, done := map[net.Conn]bool{}, false
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				s, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				mu.Lock()
				if done {
					mu.Unlock()
					c.Close()
					s.Close()
					return
				}
				open[c], open[s] = true, true
				mu.Unlock()
				var pair sync.WaitGroup
				pair.Go(func() { io.Copy(s, c); s.(*net.TCPConn).CloseWrite() })
				io.Copy(c, s)
				c.(*net.TCPConn).CloseWrite()
				pair.Wait()
				c.Close()
				s.Close()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		done = true
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  *logtest.Buffer
	done chan error
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: bin, out: &logtest.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(filepath.Join(binaries(t), bin), args...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.Env = append(os.Environ(), "NATTER_LOG_LEVEL=debug")
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", bin, p.out.String())
		}
		p.done <- nil
	})
	return p
}

// stop sends sig and waits for a clean exit.
func (p *proc) stop(sig os.Signal) {
	p.t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil && sig != syscall.SIGKILL {
			p.t.Fatalf("%s exited with %v\n%s", p.name, err, p.out.String())
		}
	case <-time.After(20 * time.Second):
		p.t.Fatalf("%s did not stop on %v", p.name, sig)
	}
}

// Listen addresses: the processes listen on port 0 and the tests read the
// address each listener got from the process's log (a port the test chose
// and the process bound later could be taken in between by another test's
// server, which would then answer for it).
const (
	anyPort   = "127.0.0.1:0"
	logTCP    = "gateway listening"                       // --listen
	logWS     = "gateway listening for websocket clients" // --ws-listen (or --wss-listen)
	logTLS    = "gateway listening for TLS clients"       // --tls-listen
	logNATS   = "embedded NATS listen*"                   // natter serve --nats-listen (Info, or a Warn without auth)
	logOps    = "serving /healthz, /readyz and /metrics"  // --http
	logServes = "natter serving"                          // natter serve: --listen, once every part is up
)

// listenAddr waits until p has logged a line with message msg (a final *:
// starting with it) that carries an addr (or address), and returns that
// address (the first such line).
func (p *proc) listenAddr(msg string) string {
	p.t.Helper()
	return loggedAddr(p.t, p.name, p.out, msg, func() {
		select {
		case err := <-p.done:
			p.done <- err
			p.t.Fatalf("%s exited (%v) before logging %q:\n%s", p.name, err, msg, p.out.String())
		default:
		}
	})
}

// listening waits until p has logged each of msgs (listen messages), or
// has exited: then it returns the exit.
func (p *proc) listening(msgs ...string) error {
	p.t.Helper()
	var exit error
	eventually.NoError(p.t, 60*time.Second, func() error {
		select {
		case err := <-p.done:
			p.done <- err
			exit = fmt.Errorf("%s exited: %v", p.name, err)
			return nil
		default:
		}
		for _, m := range msgs {
			if !strings.Contains(p.out.String(), `msg="`+m+`"`) {
				return fmt.Errorf("%s has not logged %q yet", p.name, m)
			}
		}
		return nil
	})
	return exit
}

// loggedAddr is listenAddr on any process's output; check (if not nil)
// fails the test when the process is gone.
func loggedAddr(t *testing.T, name string, out *logtest.Buffer, msg string, check func()) string {
	t.Helper()
	pattern := regexp.QuoteMeta(msg)
	if prefix, ok := strings.CutSuffix(msg, "*"); ok {
		pattern = regexp.QuoteMeta(prefix) + `[^"]*`
	}
	re := regexp.MustCompile(`msg="` + pattern + `"[^\n]*? (?:addr|address)=(\S+)`) // address: Prometheus's key
	var addr string
	eventually.NoError(t, 60*time.Second, func() error {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			return nil
		}
		if check != nil {
			check()
		}
		return fmt.Errorf("%s has not logged %q with its address yet", name, msg)
	})
	return addr
}

// tcpAddr is listenAddr as a net.Addr.
func (p *proc) tcpAddr(msg string) net.Addr {
	p.t.Helper()
	a, err := net.ResolveTCPAddr("tcp", p.listenAddr(msg))
	if err != nil {
		p.t.Fatal(err)
	}
	return a
}

// addrOf waits until addr accepts connections.
func waitListening(t *testing.T, addr string) net.Addr {
	t.Helper()
	eventually.NoError(t, 60*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		if err != nil {
			return fmt.Errorf("nothing listening on %s", addr)
		}
		return nil
	})
	a, _ := net.ResolveTCPAddr("tcp", addr)
	return a
}

func TestServeRestartKeepsAccountsAndMessages(t *testing.T) {
	run := func(t *testing.T, store ...string) {
		args := append([]string{"serve", "--listen", anyPort, "--bcrypt-cost", "4"}, store...)
		srv := startProc(t, "natter", args...)
		addr := srv.tcpAddr(logServes)
		a := dial(t, addr, '\n', "a")
		_, bid := a.signUpWithPeer("阿丽丝", "bob 😀", "pw")
		for _, m := range []string{"one", "two 你好"} {
			a.send(chat(bid, m))
			a.expect(14)
		}
		srv.stop(os.Interrupt)

		addr = startProc(t, "natter", args...).tcpAddr(logServes)
		b := dial(t, addr, '\n', "b")
		b.login(bid, "pw")
		for i, m := range []string{"one", "two 你好"} {
			if got := b.expect(6); got.str("msg") != m || got.num("seq") != int64(i+1) || got.str("name") != "阿丽丝" {
				t.Fatalf("after restart: %v", got)
			}
		}
		b.quiet(150 * time.Millisecond)
	}
	t.Run("sqlite", func(t *testing.T) { run(t, "--data", t.TempDir()) })
	t.Run("mysql", func(t *testing.T) { run(t, "--mysql-dsn", dbtest.MySQLDSN(t)) })
}

// TestSeparateProcessesAndKilledGateway runs natter serve as the NATS server
// (plus one gateway and one instance of each service), a second instance of
// every service as separate processes, and a second gateway process. A
// user on the second gateway chats with one on the first; then the second
// gateway is killed with SIGKILL and its user can log in again once its
// presence lease expires, while the first gateway's user is unaffected.
func TestSeparateProcessesAndKilledGateway(t *testing.T) {
	dsn := dbtest.MySQLDSN(t)
	srv := startProc(t, "natter", "serve", "--listen", anyPort, "--nats-listen", anyPort, "--mysql-dsn", dsn,
		"--bcrypt-cost", "4", "--login-policy", "reject")
	gw1 := srv.tcpAddr(logServes)
	natsURL := "nats://" + srv.listenAddr(logNATS)
	startProc(t, "natter-user", "--nats", natsURL, "--mysql-dsn", dsn, "--bcrypt-cost", "4", "--login-policy", "reject")
	startProc(t, "natter-offline", "--nats", natsURL, "--mysql-dsn", dsn)
	startProc(t, "natter-friend", "--nats", natsURL, "--mysql-dsn", dsn)
	startProc(t, "natter-group", "--nats", natsURL, "--mysql-dsn", dsn)
	g2 := startProc(t, "natter-gateway", "--nats", natsURL, "--listen", anyPort, "--presence-ttl", "2s")
	gw2 := g2.tcpAddr(logTCP)

	a := dial(t, gw1, '\n', "a")
	b := dial(t, gw2, '\n', "b")
	aid := a.signUp("alice", "pw")
	bid := b.signUp("bob", "pw")
	a.ok(frame{"msgid": 7, "friendid": bid})
	for i := 1; i <= 20; i++ { // spread over both instances of each service
		a.send(chat(bid, fmt.Sprint("a", i)))
		a.expect(14)
		if got := b.expect(6); got.num("seq") != int64(i) {
			t.Fatalf("bob got %v", got)
		}
		b.send(chat(aid, fmt.Sprint("b", i)))
		b.expect(14)
		if got := a.expect(6); got.num("seq") != int64(i) {
			t.Fatalf("alice got %v", got)
		}
	}
	b.send(frame{"msgid": 13, "seq": 20, "reqid": "ack"})
	b.expect(14)

	// While gateway 2 holds bob, the reject policy refuses him elsewhere.
	b2 := dial(t, gw1, '\n', "b2")
	b2.send(frame{"msgid": 1, "id": bid, "password": "pw"})
	if f := b2.expect(2); f.num("errno") != 2 {
		t.Fatalf("login while online elsewhere: %v", f)
	}
	killed := time.Now()
	g2.stop(syscall.SIGKILL)
	// alice, bob's friend, is told he went offline once the lease expires.
	a.presence(bid, "offline")
	t.Logf("alice saw bob offline %v after SIGKILL", time.Since(killed).Round(100*time.Millisecond))
	eventually.NoError(t, 10*time.Second, func() error {
		b2.send(frame{"msgid": 1, "id": bid, "password": "pw"})
		if errno := b2.expect(2).num("errno"); errno != 0 {
			return errors.New("bob could not log in again after his gateway was killed")
		}
		return nil
	})
	t.Logf("bob logged in again %v after SIGKILL (presence ttl 2s)", time.Since(killed).Round(100*time.Millisecond))

	// Alice never noticed.
	a.chatTo(b2, bid, "still there?")
}
