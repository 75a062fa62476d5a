package user

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/subject"
)

// TestClosedRunnerAnswersBusy covers the window in Stop after the runner closed
// while the drained subscriptions may still deliver requests.
func TestClosedRunnerAnswersBusy(t *testing.T) {
	ns := natstest.Run(t)
	cfg := Config{BcryptCost: bcrypt.MinCost, Concurrency: 2, RequestTimeout: 5 * time.Second}
	s, err := Start(context.Background(), natstest.Connect(t, ns), dbtest.SQLite(t), cfg,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	s.runner.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = api.Call(ctx, natstest.Connect(t, ns), subject.UserLookup, api.LookupRequest{IDs: []int64{1}}, nil)
	if !errors.Is(err, api.ErrBusy) {
		t.Errorf("got %v, want %v", err, api.ErrBusy)
	}
}
