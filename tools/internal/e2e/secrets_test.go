package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/logtest"
)

// The tests in this file run the real binaries with planted secrets, and
// against an authenticated bus.

// Planted secrets: each one appears where an operator may put it, and must
// appear in no log line and no --print-config output.
const (
	plantedURLPassword = "planted-url-password-4d1e"
	plantedURLToken    = "planted-url-token-8b07"
	plantedLiveToken   = "planted-live-token-2c9a"
	plantedDSNPassword = "planted-dsn-password-77f0"
	plantedFileSecret  = "planted-file-secret-5a3b"
	plantedChatSecret  = "planted-chat-password-e612"
)

var planted = []string{plantedURLPassword, plantedURLToken, plantedLiveToken, plantedDSNPassword, plantedFileSecret, plantedChatSecret}

// secretProc is a binary running with its output in a buffer the test
// reads while it runs.
type secretProc struct {
	name string
	cmd  *exec.Cmd
	out  *logtest.Buffer
	done chan struct{}
	err  error
}

func runSecretProc(t *testing.T, bin string, args ...string) *secretProc {
	t.Helper()
	p := &secretProc{name: bin + " " + strings.Join(args, " "), out: &logtest.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binaries(t), bin), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), "NATTER_LOG_LEVEL=debug")
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// waitLog waits until the output holds n lines with s.
func (p *secretProc) waitLog(t *testing.T, s string, n int) {
	t.Helper()
	eventually.NoError(t, 60*time.Second, func() error {
		select {
		case <-p.done:
			t.Fatalf("%s ended (%v) before logging %q %d times:\n%s", p.name, p.err, s, n, p.out.String())
		default:
		}
		if got := strings.Count(p.out.String(), s); got < n {
			return fmt.Errorf("%q %d times in the output of %s", s, n, p.name)
		}
		return nil
	})
}

// stop ends the process with SIGTERM and returns everything it wrote.
func (p *secretProc) stop(t *testing.T) string {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop on SIGTERM", p.name)
	}
	return p.out.String()
}

// noSecrets fails for every planted secret in out.
func noSecrets(t *testing.T, what, out string) {
	t.Helper()
	for _, s := range planted {
		if strings.Contains(out, s) {
			t.Errorf("%s shows the secret %s:\n%s", what, s, out)
		}
	}
	if strings.TrimSpace(out) == "" {
		t.Errorf("%s wrote nothing: nothing was checked", what)
	}
}

// startTokenNATS runs a nats-server on 127.0.0.1:port (0: any) that takes
// clients with token. A port given is one a client already knows, which
// the server before this one left: another process may have taken it
// since, so the start is tried again for 30 s at most.
func startTokenNATS(t *testing.T, port int, token string) *server.Server {
	t.Helper()
	if port == 0 {
		port = -1
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true, Authorization: token})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if s.ReadyForConnections(10 * time.Second) {
			t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
			return s
		}
		s.Shutdown()
		s.WaitForShutdown()
		if port < 0 || time.Now().After(deadline) {
			t.Fatalf("nats-server on port %d not ready", port)
		}
		t.Logf("nats-server: port %d is taken; trying again", port)
		time.Sleep(500 * time.Millisecond)
	}
}

// TestNoSecretInLogs runs natter serve, natter-gateway and the four
// services with secrets planted where operators put them: a password and
// a token in --nats URLs, the password of a MySQL DSN, the content of the
// NATS password file, a chat user's password. Each binary prints its
// configuration (--print-config), retries a NATS that cannot be reached
// (the retry loop names the URLs), a service retries a database that
// cannot be reached, and each connects to a NATS that takes a token in
// the URL, loses it and reconnects; natter serve takes a client's login.
// No planted secret appears in any output.
func TestNoSecretInLogs(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "nats-password")
	if err := os.WriteFile(pwFile, []byte(plantedFileSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	closed := refusedAddr(t) // nothing listens here
	deadURLs := fmt.Sprintf("nats://natter:%s@%s,nats://%s@%s", plantedURLPassword, closed, plantedURLToken, closed)
	dsn := fmt.Sprintf("natter:%s@tcp(%s)/natter", plantedDSNPassword, closed)

	for _, bin := range []string{"natter-gateway", "natter-user", "natter-offline", "natter-friend", "natter-group"} {
		t.Run(bin, func(t *testing.T) {
			service := bin != "natter-gateway"
			local := func(args ...string) []string {
				if service {
					args = append(args, "--sqlite", filepath.Join(t.TempDir(), "natter.db"))
				} else {
					args = append(args, "--listen", "127.0.0.1:0")
				}
				return args
			}
			// --print-config with every secret given.
			args := []string{"--print-config", "--nats", deadURLs, "--nats-user", "natter", "--nats-password-file", pwFile}
			if service {
				args = append(args, "--mysql-dsn", dsn)
			}
			out, err := exec.Command(filepath.Join(binaries(t), bin), args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s --print-config: %v\n%s", bin, err, out)
			}
			noSecrets(t, bin+" --print-config", string(out))
			if !strings.Contains(string(out), "nats=nats://natter:***@") || !strings.Contains(string(out), "nats://***@") {
				t.Errorf("--print-config does not show the URLs redacted:\n%s", out)
			}

			// NATS unreachable: the retry loop logs the URLs.
			p := runSecretProc(t, bin, local("--nats", deadURLs)...)
			p.waitLog(t, "nats not reachable yet", 2)
			noSecrets(t, bin+" retrying NATS", p.stop(t))

			// The database unreachable.
			if service {
				p := runSecretProc(t, bin, "--nats", deadURLs, "--mysql-dsn", dsn)
				p.waitLog(t, "database not reachable yet", 2)
				noSecrets(t, bin+" retrying the database", p.stop(t))
			}

			// Connected with a token in the URL, NATS lost and back.
			ns := startTokenNATS(t, 0, plantedLiveToken)
			port := ns.Addr().(*net.TCPAddr).Port
			liveURL := fmt.Sprintf("nats://%s@127.0.0.1:%d", plantedLiveToken, port)
			var users *secretProc
			if !service { // a gateway starts once the user service answers
				users = runSecretProc(t, "natter-user", "--nats", liveURL, "--sqlite", filepath.Join(t.TempDir(), "natter.db"))
				users.waitLog(t, "natter-user running", 1)
			}
			p = runSecretProc(t, bin, local("--nats", liveURL)...)
			// Started (connected, subscribed) before NATS goes away: a lost
			// first connect fails the start instead.
			started := "gateway listening"
			if service {
				started = bin + " running"
			}
			p.waitLog(t, started, 1)
			ns.Shutdown()
			ns.WaitForShutdown()
			back := startTokenNATS(t, port, plantedLiveToken)
			p.waitLog(t, "nats reconnected", 1)
			// Reconnected to this server, not to another on its port.
			clients := 1
			if users != nil {
				clients = 2
			}
			eventually.NoError(t, 30*time.Second, func() error {
				if n := back.NumClients(); n < clients {
					return fmt.Errorf("the restarted nats-server has %d clients, want %d", n, clients)
				}
				return nil
			})
			noSecrets(t, bin+" connected", p.stop(t))
			if users != nil {
				noSecrets(t, "natter-user beside "+bin, users.stop(t))
			}
		})
	}

	t.Run("natter serve", func(t *testing.T) {
		args := []string{"serve", "--print-config", "--mysql-dsn", dsn, "--nats-listen", "127.0.0.1:0",
			"--nats-user", "natter", "--nats-password-file", pwFile}
		out, err := exec.Command(filepath.Join(binaries(t), "natter"), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("natter serve --print-config: %v\n%s", err, out)
		}
		noSecrets(t, "natter serve --print-config", string(out))

		// Its NATS open to others with the password file's password; a
		// client registers, logs in with the wrong password and the right
		// one.
		p := runSecretProc(t, "natter", "serve", "--listen", anyPort, "--nats-listen", anyPort, "--nats-user", "natter",
			"--nats-password-file", pwFile, "--data", t.TempDir(), "--bcrypt-cost", "4")
		addr := waitListening(t, loggedAddr(t, p.name, p.out, logServes, nil))
		c := dial(t, addr, '\n', "client")
		id := c.register("planted", plantedChatSecret)
		c.send(frame{"msgid": 1, "id": id, "password": plantedChatSecret + "-wrong"})
		if f := c.expect(2); f.num("errno") == 0 {
			t.Fatalf("wrong password accepted: %v", f)
		}
		c.login(id, plantedChatSecret)
		noSecrets(t, "natter serve", p.stop(t))
	})
}

// TestBusAuthentication: natter serve with --nats-listen and credentials
// lets in only what presents them. A stray natter-user (its own SQLite
// file) without credentials, or with a wrong password, fails at start
// naming the authorization error, instead of joining the service's queue
// group; a gateway with the credentials joins and serves logins; and serve
// refuses to listen on every interface without credentials.
func TestBusAuthentication(t *testing.T) {
	dir := t.TempDir()
	pwFile, wrongFile := filepath.Join(dir, "pw"), filepath.Join(dir, "wrong")
	if err := os.WriteFile(pwFile, []byte("bus-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrongFile, []byte("not-the-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Port 0: were the refusal gone, the server would listen on a port of
	// its own (and be stopped by the timeout), not on one another test
	// holds.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	out, err := exec.CommandContext(ctx, filepath.Join(binaries(t), "natter"), "serve", "--nats-listen", "0.0.0.0:0",
		"--data", t.TempDir()).CombinedOutput()
	cancel()
	if err == nil || !strings.Contains(string(out), "needs authentication") {
		t.Errorf("natter serve --nats-listen 0.0.0.0:... without credentials: %v\n%s", err, out)
	}

	srv := startProc(t, "natter", "serve", "--listen", anyPort, "--nats-listen", anyPort, "--nats-user", "natter",
		"--nats-password-file", pwFile, "--data", t.TempDir(), "--bcrypt-cost", "4")
	srv.listenAddr(logServes)
	natsAddr := srv.listenAddr(logNATS)

	for _, creds := range [][]string{nil, {"--nats-user", "natter", "--nats-password-file", wrongFile}} {
		args := append([]string{"--nats", "nats://" + natsAddr, "--sqlite", filepath.Join(t.TempDir(), "stray.db")}, creds...)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err := exec.CommandContext(ctx, filepath.Join(binaries(t), "natter-user"), args...).CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil || timedOut || !strings.Contains(strings.ToLower(string(out)), "authorization violation") {
			t.Errorf("natter-user %v against the authenticated bus: %v (timed out: %v)\n%s", creds, err, timedOut, out)
		}
	}

	gw := startProc(t, "natter-gateway", "--listen", anyPort, "--nats", "nats://"+natsAddr, "--nats-user", "natter", "--nats-password-file", pwFile)
	c := dial(t, gw.tcpAddr(logTCP), '\n', "via the second gateway")
	c.signUp("bus-user", "pw")
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}
