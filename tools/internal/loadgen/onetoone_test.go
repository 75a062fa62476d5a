package loadgen

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/tools/internal/allinone/allinonetest"
)

func testLogger() *slog.Logger { return allinonetest.Logger() }

// startSystem runs a whole natter in the test process and returns its
// address; gw adjusts the gateway's configuration.
func startSystem(t *testing.T, gw func(*gateway.Config)) string { return allinonetest.Start(t, gw) }

func testConfig(addr string) Config {
	cfg := DefaultConfig()
	cfg.Addrs = []string{addr}
	cfg.Pairs = 4
	cfg.Warmup = 300 * time.Millisecond
	cfg.Duration = time.Second
	cfg.Drain = 5 * time.Second
	cfg.Timeout = time.Minute
	return cfg
}

// runReported runs cfg's workload; it returns the report, the progress
// lines and the text report.
func runReported(t *testing.T, cfg Config) (r *Report, progress, text string) {
	t.Helper()
	var p, txt bytes.Buffer
	cfg.Progress = &p
	r, err := Run(context.Background(), cfg, testLogger())
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	if err := r.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	return r, p.String(), txt.String()
}

func runBench(t *testing.T, cfg Config) *Report {
	t.Helper()
	r, progress, text := runReported(t, cfg)
	t.Logf("progress:\n%s\n%s", progress, text)
	if !strings.Contains(progress, "measure") {
		t.Errorf("no progress line from the measured window")
	}
	return r
}

func TestOneToOne(t *testing.T) {
	// A flood limit above what the loops send, as a benchmark server runs.
	addr := startSystem(t, func(c *gateway.Config) { c.FloodRate, c.FloodBurst = 1e5, 1e5 })
	tests := []struct {
		name string
		mode Mode
		rate float64
	}{
		{"closed", Closed, 0},
		{"open", Open, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(addr)
			cfg.Mode, cfg.Rate = tt.mode, tt.rate
			// The server runs in this process.
			cfg.ServerPIDs = []int{os.Getpid()}
			r := runBench(t, cfg)
			if sc := r.ServerCPU; sc == nil || sc.CPUS <= 0 || sc.Per != "message" || sc.Count != r.DeliveredInWindow ||
				sc.MicrosPer <= 0 || len(sc.Processes) != 1 {
				t.Errorf("server cpu: %+v, want the CPU per message of %d delivered in the window", sc, r.DeliveredInWindow)
			}
			if !r.OK || r.Lost != 0 || r.Duplicates != 0 || r.Reordered != 0 || r.SeqErrors != 0 {
				t.Fatalf("checks failed: %v", r.Problems())
			}
			if r.Delivered == 0 || r.DeliveredInWindow == 0 || r.DeliveredPerSec <= 0 || r.Latency.Count == 0 {
				t.Fatalf("nothing delivered: %+v", r.Result)
			}
			if r.SendErrors != 0 || r.Unanswered != 0 || r.Acked != r.Sent || r.Delivered != r.Acked {
				t.Fatalf("sent %d, acknowledged %d, delivered %d, send errors %d, unanswered %d: want all delivered",
					r.Sent, r.Acked, r.Delivered, r.SendErrors, r.Unanswered)
			}
			if r.FinalAckErrors != 0 || r.ConnErrors != 0 {
				t.Fatalf("final ack errors %d, connection errors %d", r.FinalAckErrors, r.ConnErrors)
			}
		})
	}
}

// With the gateway's flood limit below the send rate, the refused frames
// (errno 109, answered without their reqid) are send errors, not lost
// messages, and every send gets exactly one answer.
func TestOneToOneFloodLimited(t *testing.T) {
	addr := startSystem(t, func(c *gateway.Config) { c.FloodRate, c.FloodBurst = 20, 5 })
	cfg := testConfig(addr)
	cfg.Pairs = 1
	cfg.Mode, cfg.Rate = Open, 200
	cfg.AckInterval = 200 * time.Millisecond
	r := runBench(t, cfg)
	if !r.OK || r.Lost != 0 {
		t.Fatalf("checks failed: %v", r.Problems())
	}
	if r.SendErrnos["109"] == 0 || !r.FloodLimited {
		t.Fatalf("send errnos %v: want some 109", r.SendErrnos)
	}
	if r.Acked+r.SendErrors != r.Sent || r.Unanswered != 0 || r.Delivered != r.Acked {
		t.Fatalf("sent %d = acknowledged %d + send errors %d? unanswered %d, delivered %d",
			r.Sent, r.Acked, r.SendErrors, r.Unanswered, r.Delivered)
	}
}
