package allinone

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/shared/ops"
)

// testConfig is the default configuration in a test directory with the
// gateway on a port of its own, the cheapest bcrypt cost and a metrics
// registry of its own.
func testConfig(t *testing.T) (Config, *prometheus.Registry) {
	cfg := DefaultConfig(t.TempDir())
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.User.BcryptCost = bcrypt.MinCost
	reg := ops.NewRegistry()
	cfg.Registerer = reg
	return cfg, reg
}

// startSystem starts cfg, a minute at most; the caller stops it.
func startSystem(t *testing.T, cfg Config) *System {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sys, err := Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return sys
}

// TestChecks is ready once started, and names what fails: the database
// closed, the embedded NATS stopped. Every component registers its metrics
// on the one registry.
func TestChecks(t *testing.T) {
	cfg, reg := testConfig(t)
	sys := startSystem(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stopped := false
	defer func() {
		if !stopped {
			sys.Stop(context.Background())
		}
	}()
	o := ops.New(reg, slog.New(slog.DiscardHandler))
	sys.AddChecks(o)
	if err := o.Ready(ctx); err != nil {
		t.Fatalf("not ready: %v", err)
	}

	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	services := map[string]bool{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "service" {
					services[l.GetValue()] = true
				}
			}
		}
	}
	for _, s := range []string{"user", "offline", "friend", "group", "gateway"} {
		if !services[s] {
			t.Errorf("no metrics with service=%q (have %v)", s, services)
		}
	}

	sys.db.Close()
	if err := o.Ready(ctx); err == nil || !strings.Contains(err.Error(), "database") {
		t.Errorf("database closed: %v", err)
	}
	// Stop shuts the embedded nats-server down.
	stopped = true
	sys.Stop(context.Background())
	if err := o.Ready(ctx); err == nil || !strings.Contains(err.Error(), "nats") {
		t.Errorf("nats-server gone: %v", err)
	}
}
