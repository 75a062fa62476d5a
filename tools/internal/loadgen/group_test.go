package loadgen

import (
	"os"
	"testing"
	"time"

	"github.com/natter-chat/natter/gateway"
)

func TestGroup(t *testing.T) {
	addr := startSystem(t, func(c *gateway.Config) { c.FloodRate, c.FloodBurst = 1e5, 1e5 })
	cfg := testConfig(addr)
	cfg.Workload = WorkloadGroup
	cfg.Groups, cfg.Members, cfg.Senders = 2, 5, 2
	cfg.Rate = 100
	cfg.ServerPIDs = []int{os.Getpid()} // the server runs in this process
	r := runBench(t, cfg)
	if sc := r.ServerCPU; sc == nil || sc.Per != "delivery" || sc.Count != r.DeliveredInWindow || sc.CPUS <= 0 {
		t.Errorf("server cpu: %+v, want the CPU per delivery of %d in the window", sc, r.DeliveredInWindow)
	}
	if !r.OK || r.Lost != 0 || r.Duplicates != 0 || r.Reordered != 0 || r.SeqErrors != 0 || r.Foreign != 0 {
		t.Fatalf("checks failed: %v", r.Problems())
	}
	if r.Sent == 0 || r.SendErrors != 0 || r.Unanswered != 0 || r.Acked != r.Sent {
		t.Fatalf("sent %d, acknowledged %d, send errors %d, unanswered %d: want every message acknowledged",
			r.Sent, r.Acked, r.SendErrors, r.Unanswered)
	}
	if want := r.Acked * int64(cfg.Members-1); r.Delivered != want {
		t.Fatalf("deliveries = %d, want %d messages x %d recipients = %d", r.Delivered, r.Acked, cfg.Members-1, want)
	}
	if r.LastMember == nil || r.LastMember.Count == 0 || r.Latency.Count == 0 || r.DeliveredPerSec <= 0 {
		t.Fatalf("no latency or rate: %+v", r)
	}
	if r.LastMember.P50 < r.Latency.P50 {
		t.Errorf("last-member p50 %.3f ms below the delivery p50 %.3f ms", r.LastMember.P50, r.Latency.P50)
	}
	if r.FinalAckErrors != 0 || r.ConnErrors != 0 || r.Skipped != 0 {
		t.Fatalf("final ack errors %d, connection errors %d, skipped %d", r.FinalAckErrors, r.ConnErrors, r.Skipped)
	}
}

func TestGroupConfig(t *testing.T) {
	base := DefaultConfig()
	base.Workload = WorkloadGroup
	tests := []struct {
		name string
		edit func(c *Config)
		ok   bool
	}{
		{"defaults", func(c *Config) {}, true},
		{"one member", func(c *Config) { c.Members = 1 }, false},
		{"more senders than members", func(c *Config) { c.Senders = c.Members + 1 }, false},
		{"above the server's group size", func(c *Config) { c.Members = maxGroupMembers + 1 }, false},
		{"no groups", func(c *Config) { c.Groups = 0 }, false},
		{"closed loop", func(c *Config) { c.Mode = Closed }, false},
		{"negative rate", func(c *Config) { c.Rate = -1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.edit(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
	d := base.withDefaults()
	if d.Mode != Open || d.Rate != DefaultGroupRate || d.AckInterval != defaultGroupAckInterval {
		t.Errorf("group defaults: mode %s, rate %g, ack interval %s", d.Mode, d.Rate, d.AckInterval)
	}
	if d := DefaultConfig().withDefaults(); d.Mode != Closed || d.AckInterval != 10*time.Millisecond {
		t.Errorf("one-to-one defaults: mode %s, ack interval %s", d.Mode, d.AckInterval)
	}
}
