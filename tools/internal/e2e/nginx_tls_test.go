package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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

// fillTemplate renders an nginx template of deployments/nginx: every
// {{NAME}} replaced, none left over.
func fillTemplate(t *testing.T, name string, vals map[string]string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "deployments", "nginx", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for k, v := range vals {
		s = strings.ReplaceAll(s, "{{"+k+"}}", v)
	}
	if i := strings.Index(s, "{{"); i >= 0 {
		t.Fatalf("%s: placeholder left: %.40s", name, s[i:])
	}
	return s
}

// nginxBinary finds nginx and, when its stream module is a dynamic one,
// the load_module line for it. Without nginx the test skips, except in CI
// (make test installs it: deployments/local/test-deps.sh).
func nginxBinary(t *testing.T) (bin, loadModules string) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr == nil {
			bin, err = "/usr/sbin/nginx", nil
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nginx is missing (deployments/local/test-deps.sh installs it)")
		}
		t.Skip("SKIPPED: nginx is not installed (apt-get install nginx libnginx-mod-stream); the TLS templates are not run")
	}
	out, _ := exec.Command(bin, "-V").CombinedOutput()
	if strings.Contains(string(out), "--with-stream ") || strings.HasSuffix(strings.TrimSpace(string(out)), "--with-stream") {
		return bin, ""
	}
	for _, d := range []string{"/usr/lib/nginx/modules", "/usr/lib64/nginx/modules", "/usr/share/nginx/modules", "/etc/nginx/modules"} {
		if m := filepath.Join(d, "ngx_stream_module.so"); fileExists(m) {
			return bin, "load_module " + m + ";"
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx has no stream module (apt-get install libnginx-mod-stream)")
	}
	t.Skip("SKIPPED: nginx has no stream module (apt-get install libnginx-mod-stream)")
	return "", ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestNginxTLSTemplates renders the TLS-terminating variants of the nginx
// templates (natter-stream-tls, natter-websocket-tls) into the whole
// nginx.conf template beside the plain ones, runs real nginx on them in
// front of a gateway's plain listeners, and chats through it: TCP over TLS
// to nginx, wss and the page over https; the plain stream listener still
// serves beside it.
func TestNginxTLSTemplates(t *testing.T) {
	bin, mods := nginxBinary(t)
	c := newCluster(t, clusterOpts{})
	cfg := gateway.DefaultConfig()
	cfg.Listen, cfg.WSListen, cfg.Web = "127.0.0.1:0", "127.0.0.1:0", true
	g := startGateway(t, c.conn(), cfg)

	files := certtest.Write(t, "localhost", "127.0.0.1")
	// Root's nginx drops to nobody, who must read the key (a test
	// directory, a test key).
	for _, f := range []string{files.Cert, files.Key, filepath.Dir(files.Key)} {
		os.Chmod(f, 0o755)
	}
	var plain, secure, wss string
	conf := func(prefix string) (stream, http string) {
		plain, secure, wss = unusedPort(t), unusedPort(t), unusedPort(t)
		stream = fillTemplate(t, "natter-stream.conf.template", map[string]string{
			"LISTEN": plain, "CONNECT_TIMEOUT": "1s", "PROXY_TIMEOUT": "90s", "ACCESS_LOG": filepath.Join(prefix, "access.log"),
			"GATEWAY_SERVERS": "    server " + g.Addr().String() + " max_fails=3 fail_timeout=10s;",
		}) + fillTemplate(t, "natter-stream-tls.conf.template", map[string]string{
			"LISTEN": secure, "CONNECT_TIMEOUT": "1s", "PROXY_TIMEOUT": "90s", "ACCESS_LOG": filepath.Join(prefix, "access.log"),
			"GATEWAY_SERVERS": "    server " + g.Addr().String() + " max_fails=3 fail_timeout=10s;",
			"TLS_CERT":        files.Cert, "TLS_KEY": files.Key,
		})
		http = fillTemplate(t, "natter-websocket-tls.conf.template", map[string]string{
			"LISTEN": wss, "CONNECT_TIMEOUT": "1s", "READ_TIMEOUT": "1h", "ACCESS_LOG": filepath.Join(prefix, "access.log"),
			"GATEWAY_SERVERS": "    server " + g.WSAddr().String() + " max_fails=0;",
			"TLS_CERT":        files.Cert, "TLS_KEY": files.Key,
		})
		return stream, http
	}
	startNginx(t, bin, mods, conf)

	trusted := trust(t, files.CA)
	secureAddr, _ := net.ResolveTCPAddr("tcp", secure)
	plainAddr, _ := net.ResolveTCPAddr("tcp", plain)
	a, _ := dialTLS(t, secureAddr, trusted, '\n', "a-tls-nginx")
	a.signUp("alice", "pw")
	b := dial(t, plainAddr, '\n', "b-plain-nginx")
	bid := b.signUp("bob", "pw")
	a.chatTo(b, bid, "through nginx's tls")

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: trusted}, Timeout: 5 * time.Second}
	ws, err := wsconn.Dial(t.Context(), "wss://localhost:"+portOf(t, wss)+gateway.WSPath, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("wss through nginx: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	w := &client{t: t, name: "wss-nginx", conn: ws, r: bufio.NewReader(ws), term: '\n'}
	wid := w.signUp("carol", "pw")
	a.chatTo(w, wid, "to wss through nginx")
	resp, err := hc.Get("https://localhost:" + portOf(t, wss) + "/")
	if err != nil {
		t.Fatalf("page over https through nginx: %v", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "<html") {
		t.Fatalf("page over https through nginx: %d %.200s", resp.StatusCode, page)
	}
	if conn, err := tls.Dial("tcp", secure, trust(t, certtest.Write(t, "localhost").CA)); err == nil {
		conn.Close()
		t.Fatal("nginx's TLS listener accepted a client that trusts another CA")
	}
}

// startNginx runs nginx (bin, with the stream module line mods) on the
// nginx.conf template, its stream and http blocks from conf, which picks
// the ports nginx is to listen on (nginx cannot report a port of its
// own). nginx writes its pid file only once it has bound every listener,
// so the pid file with its pid shows that the nginx started here is the
// one listening there; when a port was taken meanwhile (nginx exits:
// address already in use) it starts again on new ports, 5 times at most.
// Its process group (master and workers) is killed at the end.
func startNginx(t *testing.T, bin, mods string, conf func(prefix string) (stream, http string)) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		prefix := t.TempDir()
		if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o755); err != nil {
			t.Fatal(err)
		}
		stream, web := conf(prefix)
		streamConf, httpConf := filepath.Join(prefix, "stream.conf"), filepath.Join(prefix, "http.conf")
		for p, s := range map[string]string{streamConf: stream, httpConf: web} {
			if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		pidFile := filepath.Join(prefix, "nginx.pid")
		whole := fillTemplate(t, "nginx.conf.template", map[string]string{
			"LOAD_MODULES": mods, "PID_FILE": pidFile, "ERROR_LOG": filepath.Join(prefix, "error.log"),
			"WORKER_SHUTDOWN_TIMEOUT": "1s", "WORKER_RLIMIT_NOFILE": "1024", "WORKER_CONNECTIONS": "512",
			"STREAM_CONF": streamConf, "HTTP_CONF": httpConf, "PREFIX": prefix,
		})
		// One worker: the machine is small.
		whole = strings.Replace(whole, "worker_processes auto;", "worker_processes 1;", 1)
		confFile := filepath.Join(prefix, "nginx.conf")
		if err := os.WriteFile(confFile, []byte(whole), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"-p", prefix + "/", "-e", filepath.Join(prefix, "error.log"), "-c", confFile}
		if out, err := exec.Command(bin, append(args, "-t")...).CombinedOutput(); err != nil {
			t.Fatalf("nginx -t: %v\n%s", err, out)
		}
		// nginx's output goes to a file (a pipe would be held open by its
		// workers).
		cmd := exec.Command(bin, append(args, "-g", "daemon off;")...)
		logFile, err := os.Create(filepath.Join(prefix, "output.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		err = cmd.Start()
		logFile.Close()
		if err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		logs := func() string {
			o, _ := os.ReadFile(filepath.Join(prefix, "output.log"))
			b, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			return fmt.Sprintf("nginx output:\n%s\nerror.log:\n%s", o, b)
		}
		t.Cleanup(func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			exited <- nil
			if t.Failed() {
				t.Log(logs())
			}
		})
		var exit error
		eventually.NoError(t, 60*time.Second, func() error {
			select {
			case exit = <-exited:
				exited <- exit
				return nil
			default:
			}
			if b, _ := os.ReadFile(pidFile); strings.TrimSpace(string(b)) != strconv.Itoa(cmd.Process.Pid) {
				return fmt.Errorf("nginx (pid %d) has not written its pid file: its listeners are not all bound", cmd.Process.Pid)
			}
			return nil
		})
		if exit == nil {
			return
		}
		if !strings.Contains(logs(), "Address already in use") || attempt == 5 {
			t.Fatalf("nginx exited (%v) on start, attempt %d\n%s", exit, attempt, logs())
		}
		t.Logf("nginx: a port was taken meanwhile (%v); again on other ports", exit)
	}
}
