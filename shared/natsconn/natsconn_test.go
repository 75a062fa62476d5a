package natsconn_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/natsconn"
)

func runServer(t *testing.T, port int) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
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
	eventually.True(t, 10*time.Second, func() bool { return counter(t, reg, "natter_nats_disconnects_total") == 1 },
		"the disconnect counted")
	if err := ready(context.Background()); err == nil || !strings.Contains(err.Error(), "nats connection") {
		t.Errorf("ready while disconnected: %v", err)
	}

	runServer(t, port)
	eventually.True(t, 10*time.Second, func() bool { return counter(t, reg, "natter_nats_reconnects_total") == 1 },
		"the reconnect counted")
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
