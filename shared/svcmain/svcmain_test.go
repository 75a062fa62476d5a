package svcmain

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/sqldb"
)

type fakeService struct{ stopped chan struct{} }

func (f *fakeService) Stop() error { close(f.stopped); return nil }

// TestRunLifecycle runs a service through the shared life cycle on a real
// NATS server and SQLite file: it starts with the flags' database and NATS,
// serves, and is stopped before the connection and database close.
func TestRunLifecycle(t *testing.T) {
	ns := natstest.Run(t)
	dbPath := filepath.Join(t.TempDir(), "svc.db")
	set := flag.NewFlagSet("test", flag.ContinueOnError)
	for _, f := range Flags() {
		if err := f.Apply(set); err != nil {
			t.Fatal(err)
		}
	}
	if err := set.Parse([]string{"--nats", ns.ClientURL(), "--sqlite", dbPath}); err != nil {
		t.Fatal(err)
	}
	c := cli.NewContext(cli.NewApp(), set, nil)

	svc := &fakeService{stopped: make(chan struct{})}
	started := make(chan int, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, c, "natter-test", slog.New(slog.NewTextHandler(io.Discard, nil)),
			func(ctx context.Context, env Env) (Service, error) {
				if env.DB.Dialect != sqldb.SQLite || !env.NC.IsConnected() {
					t.Errorf("dialect %v connected %v", env.DB.Dialect, env.NC.IsConnected())
				}
				started <- env.Concurrency
				return svc, nil
			})
	}()
	select {
	case n := <-started:
		if n != 4 {
			t.Errorf("concurrency for SQLite = %d, want 4", n)
		}
	case err := <-done:
		t.Fatalf("run ended before starting: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("service not started")
	}
	if _, err := os.Stat(dbPath); err != nil {
		t.Errorf("database file: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	select {
	case <-svc.stopped:
	default:
		t.Fatal("service was not stopped")
	}
}
