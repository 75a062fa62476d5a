package natsconn_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/logtest"
	"github.com/natter-chat/natter/shared/natsconn"
	"github.com/natter-chat/natter/shared/natstest"
)

func runServer(t *testing.T, port int) *server.Server {
	t.Helper()
	return natstest.RunOptions(t, &server.Options{Port: port})
}

// TestObserve counts a lost connection and its return, and Ready follows
// the connection's state.
func TestObserve(t *testing.T) {
	s := runServer(t, -1)
	port := s.Addr().(*net.TCPAddr).Port
	reg := prometheus.NewRegistry()
	m, err := natsconn.NewMetrics(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := natsconn.Connect(s.ClientURL(), "natsconn-test", slog.New(slog.DiscardHandler), natsconn.Observe(m))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ready := natsconn.Ready(nc)
	if err := ready(context.Background()); err != nil {
		t.Fatalf("ready: %v", err)
	}

	s.Shutdown()
	s.WaitForShutdown()
	eventually.NoError(t, 10*time.Second, func() error {
		if got := counter(t, reg, "natter_nats_disconnects_total"); got != 1 {
			return fmt.Errorf("still waiting for the disconnect counted: got %v, want == 1", got)
		}
		return nil
	})
	if err := ready(context.Background()); err == nil || !strings.Contains(err.Error(), "nats connection") {
		t.Errorf("ready while disconnected: %v", err)
	}

	runServer(t, port)
	eventually.NoError(t, 10*time.Second, func() error {
		if got := counter(t, reg, "natter_nats_reconnects_total"); got != 1 {
			return fmt.Errorf("still waiting for the reconnect counted: got %v, want == 1", got)
		}
		return nil
	})
	if err := ready(context.Background()); err != nil {
		t.Errorf("ready after the reconnect: %v", err)
	}
	nc.Close()
	if got := counter(t, reg, "natter_nats_disconnects_total"); got != 1 {
		t.Errorf("disconnects after a deliberate close = %v, want 1", got)
	}
}

// counter sums the counter name in reg.
func counter(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += counterValue(m)
			}
		}
	}
	return sum
}

func counterValue(m *dto.Metric) float64 { return m.GetCounter().GetValue() }

func TestInboxPrefix(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"natter-gateway", "_INBOX.gateway"},
		{"natter-user", "_INBOX.user"},
		{"natter-friend", "_INBOX.friend"},
		{"ops", "_INBOX.ops"},
		{"natter-", natsconn.DefaultInboxPrefix},
		{"", natsconn.DefaultInboxPrefix},
		{"natter-a.b", natsconn.DefaultInboxPrefix},
		{"natter-a*", natsconn.DefaultInboxPrefix},
		{"natter->", natsconn.DefaultInboxPrefix},
		{"natter test", natsconn.DefaultInboxPrefix},
	} {
		if got := natsconn.InboxPrefix(tc.name); got != tc.want {
			t.Errorf("InboxPrefix(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestRedactURLs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://natter:s3cret@nats:4222", "nats://natter:***@nats:4222"},
		{"nats://T0KEN@nats:4222", "nats://***@nats:4222"},
		{"tls://a:b@n1:4222,nats://TOKEN@n2:4222, nats://n3:4222", "tls://a:***@n1:4222,nats://***@n2:4222, nats://n3:4222"},
		{"user:pw@host:4222", "user:***@host:4222"},
		{"TOKEN@host:4222", "***@host:4222"},
		{"nats://us@r:p@ss@host:4222", "nats://us@r:***@host:4222"},
		{"nats://a:b@host:4222/x@y", "nats://a:***@host:4222/x@y"},
		{"", ""},
	} {
		if got := natsconn.RedactURLs(tc.in); got != tc.want {
			t.Errorf("RedactURLs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestRepliesOnTheRoleInbox: a requester gets its replies under its role's
// prefix, so a NATS user allowed to subscribe to _INBOX.gateway.> only can
// make requests; with nats.go's default prefix the same permissions let no
// reply through.
func TestRepliesOnTheRoleInbox(t *testing.T) {
	allow := func(subjects ...string) *server.SubjectPermission {
		return &server.SubjectPermission{Allow: subjects}
	}
	s := natstest.RunOptions(t, &server.Options{
		Users: []*server.User{
			{Username: "gateway", Password: "gw", Permissions: &server.Permissions{
				Publish: allow("svc"), Subscribe: allow("_INBOX.gateway.>")}},
			{Username: "svc", Password: "svc", Permissions: &server.Permissions{
				Subscribe: allow("svc"), Response: &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}}},
		}})
	log := slog.New(slog.DiscardHandler)

	svc, err := natsconn.Connect(s.ClientURL(), "natter-svc", log, nats.UserInfo("svc", "svc"))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if _, err := svc.Subscribe("svc", func(m *nats.Msg) { m.Respond([]byte("pong")) }); err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}

	gw, err := natsconn.Connect(s.ClientURL(), "natter-gateway", log, nats.UserInfo("gateway", "gw"))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	if inbox := gw.NewRespInbox(); !strings.HasPrefix(inbox, "_INBOX.gateway.") {
		t.Errorf("inbox %s, want one under _INBOX.gateway.", inbox)
	}
	if m, err := gw.Request("svc", nil, 5*time.Second); err != nil || string(m.Data) != "pong" {
		t.Fatalf("request on the role inbox: %v", err)
	}

	plain, err := nats.Connect(s.ClientURL(), nats.UserInfo("gateway", "gw"), nats.NoCallbacksAfterClientClose(),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Request("svc", nil, 500*time.Millisecond); err == nil {
		t.Errorf("a request with the default _INBOX prefix got a reply through permissions for _INBOX.gateway.>")
	}
}

// TestNoSecretInLogs: the password or token of a NATS URL appears in no
// log line and no error, neither while NATS cannot be reached (the retry
// loop logs the URL) nor on a reconnect.
func TestNoSecretInLogs(t *testing.T) {
	const password, token = "planted-password-7f3a", "planted-token-91c2"
	var logs logtest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	// Nothing listens: the retry loop logs each attempt.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	url := "nats://natter:" + password + "@" + closed + ",nats://" + token + "@" + closed
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { // gives up once two retries are logged
		for strings.Count(logs.String(), "nats not reachable yet") < 2 && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	_, err = natsconn.ConnectRetry(ctx, url, "natter-test", log)
	if err == nil {
		t.Fatal("connected to nothing")
	}
	if n := strings.Count(logs.String(), "nats not reachable yet"); n < 2 {
		t.Fatalf("%d retries logged, want 2:\n%s", n, logs.String())
	}
	for _, secret := range []string{password, token} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the secret %s: %v", secret, err)
		}
	}

	// A token server: connect, lose it, reconnect.
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, Authorization: token}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	port := s.Addr().(*net.TCPAddr).Port
	nc, err := natsconn.Connect(fmt.Sprintf("nats://%s@127.0.0.1:%d", token, port), "natter-test", log)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s.Shutdown()
	s.WaitForShutdown()
	opts.Port = port
	s2, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s2.Start()
	t.Cleanup(func() { s2.Shutdown(); s2.WaitForShutdown() })
	eventually.NoError(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "nats reconnected") {
			return errors.New("still waiting for the reconnect logged")
		}
		return nil
	})

	out := logs.String()
	for _, secret := range []string{password, token} {
		if strings.Contains(out, secret) {
			t.Errorf("the logs show the secret %s:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "natter:***@") || !strings.Contains(out, "nats://***@") {
		t.Errorf("the logs do not name the URLs (redacted):\n%s", out)
	}
}
