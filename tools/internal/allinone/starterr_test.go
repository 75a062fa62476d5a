package allinone_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/natter-chat/natter/tools/internal/allinone"
)

// TestStartErrorWrappedOnce: a service that cannot start says so once
// ("start group service: ..."), not once per layer.
func TestStartErrorWrappedOnce(t *testing.T) {
	cfg := allinone.DefaultConfig(t.TempDir())
	cfg.Group.Concurrency = 0
	sys, err := allinone.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		sys.Stop(context.Background())
		t.Fatal("started with a group concurrency of 0")
	}
	if n := strings.Count(err.Error(), "start group service"); n != 1 {
		t.Errorf("error %q names the start %d times, want once", err, n)
	}
}
