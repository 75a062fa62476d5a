package loadgen

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/gateway"
)

// runConnBench runs a connection workload and logs its reports.
func runConnBench(t *testing.T, cfg Config) *Report {
	t.Helper()
	r, progress, text := runReported(t, cfg)
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	t.Logf("progress:\n%s\n%s\n%s", progress, text, js.String())
	var m map[string]any
	if err := json.Unmarshal(js.Bytes(), &m); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	if m["workload"] != cfg.Workload || m["ok"] != r.OK {
		t.Errorf("JSON report: workload %v, ok %v; want %s, %v", m["workload"], m["ok"], cfg.Workload, r.OK)
	}
	if _, ok := m["lost"]; ok {
		t.Errorf("JSON report of %s has the message figures", cfg.Workload)
	}
	return r
}

func idleConfig(addr string) Config {
	cfg := testConfig(addr)
	cfg.Workload = WorkloadIdle
	cfg.Conns = 50
	cfg.PingInterval = 200 * time.Millisecond
	cfg.Duration = 1500 * time.Millisecond
	cfg.SetupConcurrency = 8
	return cfg
}

func TestIdle(t *testing.T) {
	addr := startSystem(t, nil)
	tests := []struct {
		name    string
		pid     int
		sources string
	}{
		// The server runs in this process: its memory is this process's.
		{"gateway memory", os.Getpid(), "auto"},
		{"no pid, three source addresses", 0, "127.0.0.2-127.0.0.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := idleConfig(addr)
			cfg.GatewayPID = tt.pid
			var err error
			if cfg.Sources, err = ParseSources(tt.sources); err != nil {
				t.Fatal(err)
			}
			r := runConnBench(t, cfg)
			ir := r.Idle
			if !r.OK || ir == nil || len(r.Problems()) != 0 {
				t.Fatalf("not OK: %v", r.Problems())
			}
			if ir.Established != int64(cfg.Conns) || ir.FailedLogins != 0 || ir.LoginsPerSec <= 0 ||
				ir.LoginLatency.Count != int64(cfg.Conns) {
				t.Fatalf("established %d of %d, failed %d, %.1f logins/s, %d login latencies",
					ir.Established, cfg.Conns, ir.FailedLogins, ir.LoginsPerSec, ir.LoginLatency.Count)
			}
			// Every connection pings every 200 ms for 1.5 s: 7 or 8 times.
			if ir.Pings < int64(6*cfg.Conns) || ir.PingsAnswered != ir.Pings || ir.PingsFailed != 0 ||
				ir.ConnsLost != 0 || ir.PongLatency.Count != ir.PingsAnswered {
				t.Fatalf("pings %d, answered %d, failed %d, lost %d, pong latencies %d",
					ir.Pings, ir.PingsAnswered, ir.PingsFailed, ir.ConnsLost, ir.PongLatency.Count)
			}
			if ir.ClientRSS == nil || ir.ClientRSS.Before <= 0 || ir.ClientRSS.Connected <= 0 || ir.ClientRSS.End <= 0 {
				t.Errorf("client memory %+v: want every reading", ir.ClientRSS)
			}
			if tt.pid == 0 {
				if ir.GatewayRSS != nil {
					t.Errorf("gateway memory %+v without a pid", ir.GatewayRSS)
				}
			} else if g := ir.GatewayRSS; g == nil || g.PID != tt.pid || g.Before <= 0 || g.Connected <= 0 || g.End <= 0 ||
				g.PerConn != float64(g.Connected-g.Before)/float64(cfg.Conns) {
				t.Errorf("gateway memory %+v: want every reading and the figure per connection", g)
			}
			if want := strings.Count(tt.sources, "-") * 3; len(r.SourceAddrs) != want {
				t.Errorf("source addresses %v: want %d", r.SourceAddrs, want)
			}
		})
	}
}

// A gateway that closes connections idle for 1 s, with pings every 3 s:
// the connections whose first ping comes late are gone, their pings fail.
// (1 s, not less: the setup's registrations must get through on a loaded
// machine.)
func TestIdleConnectionsLost(t *testing.T) {
	addr := startSystem(t, func(c *gateway.Config) { c.IdleTimeout = time.Second })
	cfg := idleConfig(addr)
	cfg.PingInterval = 3 * time.Second
	cfg.Duration = 3 * time.Second
	r := runConnBench(t, cfg)
	ir := r.Idle
	if r.OK || ir.ConnsLost == 0 || ir.PingsFailed == 0 || ir.PingsAnswered+ir.PingsFailed != ir.Pings {
		t.Fatalf("ok %v, pings %d, answered %d, failed %d, lost %d: want lost connections and a failed run",
			r.OK, ir.Pings, ir.PingsAnswered, ir.PingsFailed, ir.ConnsLost)
	}
	if p := strings.Join(r.Problems(), ", "); !strings.Contains(p, "connections lost") {
		t.Errorf("problems %q: want the lost connections", p)
	}
}

func TestPingSchedule(t *testing.T) {
	start := time.Unix(1000, 0)
	s := pingSchedule{start: start, end: start.Add(time.Minute), interval: 30 * time.Second, n: 4}
	tests := []struct {
		i, k int
		want time.Duration
	}{
		{0, 0, 0},
		{1, 0, 7500 * time.Millisecond},
		{3, 0, 22500 * time.Millisecond},
		{0, 1, 30 * time.Second},
		{2, 1, 45 * time.Second},
	}
	for _, tt := range tests {
		if got := s.due(tt.i, tt.k).Sub(start); got != tt.want {
			t.Errorf("due(%d, %d) = start + %s, want + %s", tt.i, tt.k, got, tt.want)
		}
	}
}

func TestReadRSS(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skipf("no /proc here (%v): resident memory is read on Linux only", err)
	}
	self, err := readRSS(0)
	if err != nil || self <= 0 {
		t.Fatalf("readRSS(0) = %d, %v", self, err)
	}
	byPID, err := readRSS(os.Getpid())
	if err != nil || byPID <= 0 {
		t.Fatalf("readRSS(%d) = %d, %v", os.Getpid(), byPID, err)
	}
	if _, err := readRSS(1 << 30); err == nil {
		t.Errorf("readRSS of a process that does not exist: no error")
	}
}
