package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/logtest"
)

// startServe runs natter serve with args in this process until the test
// ends, its gateway and ops endpoints on port 0; it returns the addresses
// they got, read from its log (a port chosen by the test could be taken by
// another test's server before serve binds it), and serve's result.
func startServe(t *testing.T, args ...string) (gwAddr, opsAddr string, stop context.CancelFunc, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := &logtest.Buffer{}
	app := newApp()
	app.ErrWriter = log
	ch := make(chan error, 1)
	go func() {
		ch <- app.RunContext(ctx, append([]string{"natter", "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
			"--bcrypt-cost", "4", "--log-level", "info"}, args...))
	}()
	addr := func(msg string) string {
		re := regexp.MustCompile(`msg="` + regexp.QuoteMeta(msg) + `"[^\n]*? addr=(\S+)`)
		var a string
		eventually.NoError(t, 60*time.Second, func() error {
			select {
			case err := <-ch:
				t.Fatalf("natter serve ended: %v\n%s", err, log.String())
			default:
			}
			m := re.FindStringSubmatch(log.String())
			if m == nil {
				return fmt.Errorf("natter serve has not logged %q with its address yet", msg)
			}
			a = m[1]
			return nil
		})
		return a
	}
	return addr("natter serving"), addr("serving /healthz, /readyz and /metrics"), cancel, ch
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestServeOps runs natter serve with --http: /healthz, /readyz once the
// system is up, and /metrics with every component's metrics on one
// registry, counting a registration made through the gateway.
func TestServeOps(t *testing.T) {
	gwAddr, opsAddr, cancel, done := startServe(t, "--data", t.TempDir())
	base := "http://" + opsAddr
	eventually.NoError(t, 60*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("natter serve ended: %v", err)
		default:
		}
		code, _ := httpGet(t, base+"/readyz")
		if code != http.StatusOK {
			return errors.New("still waiting for /readyz to pass")
		}
		return nil
	})
	if code, body := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}

	conn, err := net.Dial("tcp", gwAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(`{"msgid":4,"name":"alice","password":"secret"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var ack struct{ MsgID, Errno, ID int64 }
	if err := json.Unmarshal(bytes.TrimRight(line, "\x00\n"), &ack); err != nil || ack.MsgID != 5 || ack.Errno != 0 || ack.ID <= 0 {
		t.Fatalf("REG_ACK %s: %v", line, err)
	}

	want := []string{
		`natter_requests_total{endpoint="register",result="ok",service="user"} 1`,
		`natter_user_registrations_total{result="ok",service="user"} 1`,
		`natter_db_operation_duration_seconds_count{op="exec",service="user"}`,
		`natter_offline_store_queue_length{service="offline"} 0`,
		`natter_friend_presence_events_total{service="friend"}`,
		`natter_group_created_total{service="group"} 0`,
		`natter_nats_disconnects_total{service="gateway"} 0`,
		`natter_gateway_`,
		`go_goroutines `,
	}
	var body string
	eventually.NoError(t, 10*time.Second, func() error {
		_, body = httpGet(t, base+"/metrics")
		for _, w := range want {
			if !strings.Contains(body, w) {
				return errors.New("still waiting for every component's metrics in /metrics")
			}
		}
		return nil
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("natter serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("natter serve did not stop")
	}
	if code, _ := httpGet(t, base+"/healthz"); code != 0 {
		t.Errorf("ops endpoints still served after the stop: %d", code)
	}
}

// TestServePrintConfig prints the configuration, the DSN's password
// redacted, and starts nothing.
func TestServePrintConfig(t *testing.T) {
	var out bytes.Buffer
	app := newApp()
	app.Writer = &out
	data := filepath.Join(t.TempDir(), "never-created")
	err := app.Run([]string{"natter", "serve", "--print-config", "--data", data,
		"--mysql-dsn", "natter:hunter2@tcp(db:3306)/natter"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mysql-dsn=natter:***@tcp(db:3306)/natter\n", "data=" + data + "\n",
		"listen=", "retention=24h0m0s\n", "bcrypt-cost=10\n", "http=\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "hunter2") {
		t.Errorf("password printed:\n%s", out.String())
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("the data directory was created: %v", err)
	}
}

// TestServeWSListenEmpty: an empty --ws-listen runs without WebSocket and
// without the page (docs/configuration.md), rather than refusing --web
// without an address; --web=true with it is still refused.
func TestServeWSListenEmpty(t *testing.T) {
	_, opsAddr, cancel, done := startServe(t, "--data", t.TempDir(), "--ws-listen", "")
	eventually.NoError(t, 60*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("natter serve --ws-listen '' ended: %v", err)
		default:
		}
		code, _ := httpGet(t, "http://"+opsAddr+"/readyz")
		if code != http.StatusOK {
			return errors.New("still waiting for /readyz to pass")
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("stop: %v", err)
	}
	err := newApp().RunContext(context.Background(), []string{"natter", "serve", "--data", t.TempDir(),
		"--ws-listen", "", "--web=true", "--listen", "127.0.0.1:0", "--log-level", "error"})
	if err == nil {
		t.Error("--ws-listen '' --web=true: no error")
	}
}

// TestServeConfigErrors: natter serve reports the bad values of all its
// parts at once, each with its flag, before it starts anything.
func TestServeConfigErrors(t *testing.T) {
	err := newApp().RunContext(context.Background(), []string{"natter", "serve", "--data", t.TempDir(),
		"--listen", "127.0.0.1:0", "--log-level", "error",
		"--max-frame", "10", "--bcrypt-cost", "99", "--batch-size", "-1", "--presence-coalesce", "0s", "--group-cache", "0"})
	for _, want := range []string{"--max-frame 10", "--bcrypt-cost 99", "--batch-size -1", "--presence-coalesce 0s", "--group-cache 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("natter serve: %v, want an error naming %q", err, want)
		}
	}
}
