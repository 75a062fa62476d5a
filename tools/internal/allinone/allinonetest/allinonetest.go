// Package allinonetest runs a whole natter in a test process: embedded
// NATS, the four services on SQLite in t.TempDir(), and one gateway on a
// random port, stopped when the test ends.
package allinonetest

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/tools/internal/allinone"
)

// Logger discards unless NATTER_TEST_LOG is set (then debug to stderr).
func Logger() *slog.Logger {
	if os.Getenv("NATTER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// Start starts the system with the lowest bcrypt cost and returns the
// gateway's address; gw, if not nil, adjusts the gateway's configuration.
func Start(t *testing.T, gw func(*gateway.Config)) string {
	t.Helper()
	return StartSystem(t, gw).Addr().String()
}

// StartWS is Start with the gateway's WebSocket endpoint on a random port
// too; it returns the TCP address and the WebSocket URL (ws://host:port/ws).
func StartWS(t *testing.T, gw func(*gateway.Config)) (addr, wsURL string) {
	t.Helper()
	sys := StartSystem(t, func(c *gateway.Config) {
		c.WSListen = "127.0.0.1:0"
		if gw != nil {
			gw(c)
		}
	})
	return sys.Addr().String(), "ws://" + sys.WSAddr().String() + gateway.WSPath
}

// StartSystem is Start returning the running system.
func StartSystem(t *testing.T, gw func(*gateway.Config)) *allinone.System {
	t.Helper()
	cfg := allinone.DefaultConfig(t.TempDir())
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.User.BcryptCost = bcrypt.MinCost
	if gw != nil {
		gw(&cfg.Gateway)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sys, err := allinone.Start(ctx, cfg, Logger())
	if err != nil {
		t.Fatalf("start natter: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := sys.Stop(ctx); err != nil {
			t.Errorf("stop natter: %v", err)
		}
	})
	return sys
}
