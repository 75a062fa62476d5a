package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/gateway/wsconn"
	"github.com/natter-chat/natter/shared/certtest"
	"github.com/natter-chat/natter/shared/eventually"
)

// The tests in this file cover TLS for clients: --tls-listen and
// --wss-listen beside the plain listeners, certificates reloaded on file
// change and on SIGHUP, refusals, and the flag errors.

// trust is a client configuration trusting the CAs in files.
func trust(t testing.TB, cas ...string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	for _, f := range cas {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !pool.AppendCertsFromPEM(b) {
			t.Fatalf("no certificate in %s", f)
		}
	}
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

// dialTLS connects to a TLS listener and returns a client of it, with the
// serial of the certificate the gateway served.
func dialTLS(t testing.TB, addr net.Addr, conf *tls.Config, term byte, name string) (*client, string) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr.String(), conf)
	if err != nil {
		t.Fatalf("%s: tls dial %s: %v", name, addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	serial := conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
	return &client{t: t, name: name, conn: conn, r: bufio.NewReaderSize(conn, 128<<10), term: term}, serial
}

// servedSerial is the serial of the certificate addr serves now.
func servedSerial(t testing.TB, addr string, conf *tls.Config) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		t.Fatalf("tls dial %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

// serialOf is the serial of the certificate in a PEM file.
func serialOf(t testing.TB, file string) string {
	t.Helper()
	c, err := tls.LoadX509KeyPair(file, strings.TrimSuffix(file, "cert.pem")+"key.pem")
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber.Text(16)
}

// renew writes a new certificate (from a new CA) over files and returns
// the path of the new CA, kept beside them.
func renew(t testing.TB, files certtest.Files, name string) string {
	t.Helper()
	p, err := certtest.New("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(filepath.Dir(files.CA), name+"-ca.pem")
	for path, data := range map[string][]byte{ca: p.CA, files.Cert: p.Cert, files.Key: p.Key} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ca
}

func tlsGateway(t *testing.T, c *cluster, files certtest.Files, reload time.Duration) *gateway.Gateway {
	t.Helper()
	cfg := gateway.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.TLSListen = "127.0.0.1:0"
	cfg.WSSListen = "127.0.0.1:0"
	cfg.Web = true
	cfg.TLSCert, cfg.TLSKey = files.Cert, files.Key
	cfg.TLSReloadInterval = reload
	g := startGateway(t, c.conn(), cfg)
	return g
}

// TestTLSListeners logs in and chats over the TLS listener in both
// dialects and over wss, with a plain TCP client of the same gateway; the
// page is served on https; a client that does not trust the CA, and one
// that offers only TLS 1.1, are refused.
func TestTLSListeners(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	files := certtest.Write(t, "localhost", "127.0.0.1")
	g := tlsGateway(t, c, files, 0)
	conf := trust(t, files.CA)

	a, _ := dialTLS(t, g.TLSAddr(), conf, '\n', "a-tls")
	aid := a.signUp("alice", "pw")
	b := dial(t, g.Addr(), '\n', "b-plain")
	bid := b.signUp("bob", "pw")
	a.send(chat(bid, "over tls"))
	a.expect(14)
	if f := b.expect(6); f.str("msg") != "over tls" || f.num("id") != aid {
		t.Fatalf("plain client got %v", f)
	}
	b.chatTo(a, aid, "in clear")

	// The legacy dialect (NUL-terminated frames) over TLS.
	l, _ := dialTLS(t, g.TLSAddr(), conf, 0, "legacy-tls")
	lid := l.signUp("carol", "pw")
	a.chatTo(l, lid, "to the legacy dialect")
	l.send(chat(aid, "from the legacy dialect")) // no reply in the legacy dialect
	if f := a.expect(6); f.str("msg") != "from the legacy dialect" {
		t.Fatalf("tls client got %v", f)
	}

	// wss and the page over https.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, err := wsconn.Dial(ctx, "wss://localhost:"+port(g.WSSAddr())+gateway.WSPath, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	w := &client{t: t, name: "wss", conn: ws, r: bufio.NewReader(ws), term: '\n'}
	wid := w.signUp("dave", "pw")
	a.chatTo(w, wid, "to wss")
	resp, err := hc.Get("https://localhost:" + port(g.WSSAddr()) + "/")
	if err != nil {
		t.Fatalf("page over https: %v", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "<html") {
		t.Fatalf("page over https: %d %.200s", resp.StatusCode, page)
	}

	// Refusals: another CA; TLS 1.1; plain text to the TLS port.
	other := certtest.Write(t, "localhost", "127.0.0.1")
	if conn, err := tls.Dial("tcp", g.TLSAddr().String(), trust(t, other.CA)); err == nil {
		conn.Close()
		t.Fatal("a client trusting another CA completed a handshake")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted handshake: %v, want a certificate error", err)
	}
	old := conf.Clone()
	old.MaxVersion = tls.VersionTLS11
	if conn, err := tls.Dial("tcp", g.TLSAddr().String(), old); err == nil {
		conn.Close()
		t.Fatal("a TLS 1.1 handshake was accepted")
	}
	if _, err := wsconn.Dial(ctx, "wss://localhost:"+port(g.WSSAddr())+gateway.WSPath,
		&websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: trust(t, other.CA)}}}); err == nil {
		t.Fatal("a wss client trusting another CA connected")
	}
	p := dial(t, g.TLSAddr(), '\n', "plain-to-tls")
	p.sendRaw(`{"msgid":4,"name":"eve","password":"pw"}` + "\n")
	if s, err := p.recvRaw(5 * time.Second); err == nil {
		t.Fatalf("plain text to the TLS port was answered: %q", s)
	}
	// The refusals left the listener serving.
	a2, _ := dialTLS(t, g.TLSAddr(), conf, '\n', "a2-tls")
	a2.login(aid, "pw")
}

func port(a net.Addr) string { return strconv.Itoa(a.(*net.TCPAddr).Port) }

// TestTLSReloadOnFileChange renews the certificate files of a running
// gateway: new connections get the new certificate once the files are read
// again, while an open connection keeps working; a pair that does not
// match is refused and the certificate in use kept.
func TestTLSReloadOnFileChange(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	files := certtest.Write(t, "localhost", "127.0.0.1")
	g := tlsGateway(t, c, files, 50*time.Millisecond)
	first := serialOf(t, files.Cert)
	a, served := dialTLS(t, g.TLSAddr(), trust(t, files.CA), '\n', "a")
	if served != first {
		t.Fatalf("served serial %s, want %s", served, first)
	}
	aid := a.signUp("alice", "pw")

	ca2 := renew(t, files, "second")
	second := serialOf(t, files.Cert)
	both := trust(t, files.CA, ca2)
	for _, addr := range []net.Addr{g.TLSAddr(), g.WSSAddr()} {
		eventually.NoError(t, 10*time.Second, func() error {
			if got := servedSerial(t, addr.String(), both); got != second {
				return fmt.Errorf("%s still serves the first certificate (serial %s) after the files changed", addr, got)
			}
			return nil
		})
	}
	// The open connection still works; a new one trusting only the new CA
	// logs in.
	a.send(frame{"msgid": 11})
	a.expect(12)
	b, _ := dialTLS(t, g.TLSAddr(), trust(t, ca2), '\n', "b")
	b.login(aid, "pw")

	// A certificate with another certificate's key: kept out.
	p, err := certtest.New("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.Cert, p.Cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.ReloadTLS(); err == nil {
		t.Fatal("ReloadTLS took a certificate with another certificate's key")
	}
	if got := servedSerial(t, g.TLSAddr().String(), both); got != second {
		t.Fatalf("after a bad pair the gateway serves %s, want %s (kept)", got, second)
	}
}

// tlsServe starts natter serve with TLS listeners, reloading only on
// SIGHUP, and returns it with its addresses.
func tlsServe(t *testing.T, files certtest.Files, extra ...string) (srv *proc, plain, secure, wss string) {
	t.Helper()
	args := append([]string{"serve", "--listen", anyPort, "--tls-listen", anyPort, "--wss-listen", anyPort, "--ws-listen", "",
		"--tls-cert", files.Cert, "--tls-key", files.Key, "--tls-reload-interval", "0",
		"--data", t.TempDir(), "--bcrypt-cost", "4"}, extra...)
	srv = startProc(t, "natter", args...)
	// --ws-listen '': the one WebSocket listener is wss.
	return srv, srv.listenAddr(logServes), srv.listenAddr(logTLS), srv.listenAddr(logWS)
}

// TestServeTLSProcess runs natter serve with --tls-listen and
// --wss-listen: a login and a chat over TLS to a plain client, then a
// renewed certificate taken on SIGHUP (not before: --tls-reload-interval 0).
func TestServeTLSProcess(t *testing.T) {
	files := certtest.Write(t, "localhost", "127.0.0.1")
	srv, plain, secure, wss := tlsServe(t, files)
	conf := trust(t, files.CA)
	tlsAddr, _ := net.ResolveTCPAddr("tcp", secure)
	plainAddr, _ := net.ResolveTCPAddr("tcp", plain)
	a, _ := dialTLS(t, tlsAddr, conf, '\n', "a-tls")
	a.signUp("alice", "pw")
	b := dial(t, plainAddr, '\n', "b-plain")
	bid := b.signUp("bob", "pw")
	a.chatTo(b, bid, "over tls")

	first := serialOf(t, files.Cert)
	ca2 := renew(t, files, "second")
	second := serialOf(t, files.Cert)
	both := trust(t, files.CA, ca2)
	if got := servedSerial(t, secure, both); got != first {
		t.Fatalf("serial %s before SIGHUP, want %s (no reload without it)", got, first)
	}
	srv.cmd.Process.Signal(syscall.SIGHUP)
	for _, addr := range []string{secure, wss} {
		eventually.NoError(t, 10*time.Second, func() error {
			if got := servedSerial(t, addr, both); got != second {
				return fmt.Errorf("%s serves serial %s after SIGHUP, not the renewed certificate's", addr, got)
			}
			return nil
		})
	}
	a.send(frame{"msgid": 11})
	a.expect(12)
	srv.stop(os.Interrupt)
}

// TestGatewayProcessTLS runs natter-gateway with --tls-listen next to
// natter serve: a TLS client and a client of natter serve chat, and SIGHUP
// reloads the certificate.
func TestGatewayProcessTLS(t *testing.T) {
	srv := startProc(t, "natter", "serve", "--listen", anyPort, "--nats-listen", anyPort, "--data", t.TempDir(), "--bcrypt-cost", "4")
	addr1, natsAddr := srv.tcpAddr(logServes), srv.listenAddr(logNATS)
	files := certtest.Write(t, "localhost", "127.0.0.1")
	g := startProc(t, "natter-gateway", "--nats", "nats://"+natsAddr, "--listen", "", "--tls-listen", anyPort,
		"--tls-cert", files.Cert, "--tls-key", files.Key, "--tls-reload-interval", "0")
	tlsAddr := g.tcpAddr(logTLS)
	secure := tlsAddr.String()

	conf := trust(t, files.CA)
	a, _ := dialTLS(t, tlsAddr, conf, '\n', "a-tls")
	aid := a.signUp("alice", "pw")
	b := dial(t, addr1, '\n', "b-plain")
	b.signUp("bob", "pw")
	b.chatTo(a, aid, "to the tls gateway")

	ca2 := renew(t, files, "second")
	second := serialOf(t, files.Cert)
	g.cmd.Process.Signal(syscall.SIGHUP)
	both := trust(t, files.CA, ca2)
	eventually.NoError(t, 10*time.Second, func() error {
		if got := servedSerial(t, secure, both); got != second {
			return fmt.Errorf("natter-gateway serves serial %s after SIGHUP, not the renewed certificate's", got)
		}
		return nil
	})
	g.stop(syscall.SIGTERM)
}

// TestTLSFlagErrors starts natter-gateway and natter serve with TLS flags
// that do not go together, or files that do not load: each exits at once
// with an error that says what is wrong.
func TestTLSFlagErrors(t *testing.T) {
	bin := binaries(t)
	files := certtest.Write(t, "localhost", "127.0.0.1")
	other := certtest.Write(t, "localhost")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"tls listen without cert", []string{"--tls-listen", "127.0.0.1:0"}, "need a certificate: give --tls-cert and --tls-key"},
		{"wss listen without key", []string{"--wss-listen", "127.0.0.1:0", "--tls-cert", files.Cert}, "need a certificate"},
		{"cert without key", []string{"--tls-listen", "127.0.0.1:0", "--tls-cert", files.Cert, "--tls-key", ""}, "need a certificate"},
		{"cert without a tls listener", []string{"--tls-cert", files.Cert, "--tls-key", files.Key}, "give --tls-listen or --wss-listen"},
		{"no listener at all", []string{"--listen", "", "--ws-listen", ""}, "no client listener"},
		{"one address twice", []string{"--listen", "127.0.0.1:7", "--tls-listen", "127.0.0.1:7", "--tls-cert", files.Cert, "--tls-key", files.Key}, "both 127.0.0.1:7"},
		{"missing cert file", []string{"--tls-listen", "127.0.0.1:0", "--tls-cert", missing, "--tls-key", files.Key}, "no such file"},
		{"key of another certificate", []string{"--tls-listen", "127.0.0.1:0", "--tls-cert", files.Cert, "--tls-key", other.Key}, "private key does not match"},
		{"key file as certificate", []string{"--tls-listen", "127.0.0.1:0", "--tls-cert", files.Key, "--tls-key", files.Key}, "TLS certificate"},
	}
	for _, tc := range cases {
		for _, cmd := range [][]string{
			{"natter-gateway", "--nats", "nats://127.0.0.1:1"},
			{"natter", "serve", "--data", t.TempDir()},
		} {
			t.Run(cmd[0]+"/"+tc.name, func(t *testing.T) {
				args := append(append([]string{}, cmd[1:]...), tc.args...)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				out, err := exec.CommandContext(ctx, filepath.Join(bin, cmd[0]), args...).CombinedOutput()
				if err == nil || ctx.Err() != nil {
					t.Fatalf("%s %v: exited %v, want an error at once\n%s", cmd[0], args, err, out)
				}
				if !strings.Contains(string(out), tc.want) {
					t.Fatalf("%s %v:\n%s\nwant %q", cmd[0], args, out, tc.want)
				}
			})
		}
	}
}

// TestChatAndBenchOverTLS runs natter chat and natter bench with --tls
// against natter serve's TLS listeners: chat registers and sends over
// TLS; bench runs over TLS and over wss (ws:// addresses made wss:// by
// --tls); without --tls-ca the private CA is not trusted and both fail.
func TestChatAndBenchOverTLS(t *testing.T) {
	files := certtest.Write(t, "localhost", "127.0.0.1")
	_, plain, secure, wss := tlsServe(t, files)
	bin := filepath.Join(binaries(t), "natter")
	run := func(env []string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	tlsArgs := []string{"--tls", "--tls-ca", files.CA}
	pw := []string{"NATTER_PASSWORD=pw"}
	reg := func(name string, args ...string) string {
		out, err := run(pw, append([]string{"chat", "--register", name, "--id-only"}, args...)...)
		if err != nil {
			t.Fatalf("natter chat --register %s %v: %v\n%s", name, args, err, out)
		}
		return strings.TrimSpace(out)
	}
	aid := reg("alice", append([]string{"--addr", secure}, tlsArgs...)...)
	plainAddr, _ := net.ResolveTCPAddr("tcp", plain)
	b := dial(t, plainAddr, '\n', "b-plain")
	bid := b.signUp("bob", "pw")
	if out, err := run(pw, append([]string{"chat", "--addr", secure, "--user", aid, "--send",
		"chat:" + strconv.FormatInt(bid, 10) + ":sent by natter chat over tls"}, tlsArgs...)...); err != nil {
		t.Fatalf("natter chat --send over tls: %v\n%s", err, out)
	}
	if f := b.expect(6); f.str("msg") != "sent by natter chat over tls" {
		t.Fatalf("plain client got %v", f)
	}

	bench := []string{"bench", "--workload", "one-to-one", "--pairs", "2", "--warmup", "0s", "--duration", "1s", "--quiet"}
	for _, addr := range []string{secure, "ws://localhost:" + portOf(t, wss) + gateway.WSPath} {
		if out, err := run(nil, append(append(bench, "--addr", addr), tlsArgs...)...); err != nil {
			t.Fatalf("natter bench --tls --addr %s: %v\n%s", addr, err, out)
		}
	}

	// The private CA is not trusted without --tls-ca.
	if out, err := run(pw, "chat", "--addr", secure, "--tls", "--register", "carol", "--connect-timeout", "2s"); err == nil ||
		!strings.Contains(out, "certificate") {
		t.Fatalf("natter chat --tls without --tls-ca: %v\n%s", err, out)
	}
	if out, err := run(nil, append(bench, "--addr", secure, "--tls")...); err == nil || !strings.Contains(out, "certificate") {
		t.Fatalf("natter bench --tls without --tls-ca: %v\n%s", err, out)
	}
	if out, err := run(nil, "chat", "--addr", secure, "--tls-ca", files.CA, "--register", "dave"); err == nil ||
		!strings.Contains(out, "need --tls") {
		t.Fatalf("natter chat --tls-ca without --tls: %v\n%s", err, out)
	}
}
