// Package natstest runs an in-process nats-server on a random port for
// tests, and gives tests what they do on it: connections and subscriptions
// that end with the test, services started on them (StartService), and
// micro discovery ($SRV.INFO, $SRV.STATS).
package natstest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Run starts a nats-server on a random loopback port and shuts it down when
// the test ends.
func Run(t testing.TB) *server.Server {
	t.Helper()
	return RunOptions(t, &server.Options{
		// Fast detection of dead clients, like the deployments use.
		PingInterval: 2 * time.Second,
		MaxPingsOut:  2,
	})
}

// RunOptions starts a nats-server with opts (users, a cluster, ...) and
// shuts it down when the test ends. It listens on loopback unless
// opts.Host says otherwise, on a random port unless opts.Port is set
// (never on 4222, the port 0 stands for), and neither logs nor takes
// signals.
func RunOptions(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = -1
	}
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("natstest: server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect opens a client connection to s, closed when the test ends.
func Connect(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Subscribe subscribes nc to subj for the rest of the test and flushes, so
// that the server has the subscription once it returns.
func Subscribe(t testing.TB, nc *nats.Conn, subj string, cb nats.MsgHandler) *nats.Subscription {
	t.Helper()
	sub, err := nc.Subscribe(subj, cb)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

// StartService starts a service with start (user.Start, offline.Start,
// ...) on a connection of its own to s, with db, cfg and log, and stops it
// when the test ends, before that connection closes. A failed start or stop
// fails the test.
func StartService[DB, C any, S interface{ Stop() error }](t testing.TB, s *server.Server,
	start func(context.Context, *nats.Conn, DB, C, *slog.Logger) (S, error), db DB, cfg C, log *slog.Logger) S {
	t.Helper()
	svc, err := start(context.Background(), Connect(t, s), db, cfg, log)
	if err != nil {
		t.Fatalf("natstest: start service: %v", err)
	}
	t.Cleanup(func() {
		if err := svc.Stop(); err != nil {
			t.Errorf("natstest: stop service: %v", err)
		}
	})
	return svc
}
