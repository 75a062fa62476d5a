package main

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
)

func TestParse(t *testing.T) {
	t.Setenv("NATTER_RETENTION", "2h")
	var cfg config
	app := &cli.App{Flags: flags(), Action: func(c *cli.Context) error {
		var err error
		cfg, err = parse(c)
		return err
	}}
	if err := app.Run([]string{"natter-offline", "--batch-size", "64", "--writers", "2"}); err != nil {
		t.Fatal(err)
	}
	if cfg.svc.Retention != 2*time.Hour || cfg.svc.BatchSize != 64 || cfg.svc.Writers != 2 ||
		cfg.svc.QueueLimit != 8192 || cfg.dbConns != 16 || cfg.natsURL == "" {
		t.Errorf("config %+v", cfg)
	}
	if err := app.Run([]string{"natter-offline", "--writers", "-1"}); err == nil {
		t.Error("negative --writers accepted")
	}
}

// TestRun serves a store request, then shuts down when ctx ends.
func TestRun(t *testing.T) {
	ns := natstest.Run(t)
	db := dbtest.SQLite(t)
	cfg := config{
		natsURL: ns.ClientURL(),
		dbConns: 4,
		openDB:  func(context.Context) (*sqldb.DB, error) { return db, nil },
		log:     slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg) }()

	nc := natstest.Connect(t, ns)
	req := api.StoreRequest{From: 1, To: []int64{2}, CID: "x", Body: []byte(`{"text":"hi"}`)}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var resp api.StoreResponse
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := api.Call(rctx, nc, subject.OfflineStore, req, &resp)
		rcancel()
		if err == nil {
			break
		}
		if !errors.Is(err, api.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("store: %v", err)
		}
		<-tick.C // not started yet
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
}
