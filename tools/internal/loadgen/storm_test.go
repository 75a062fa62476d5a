package loadgen

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/natter-chat/natter/shared/wire"
)

func stormConfig(addr, workload string) Config {
	cfg := testConfig(addr)
	cfg.Workload = workload
	cfg.Users = 100
	cfg.Concurrency = 16
	return cfg
}

func TestStorm(t *testing.T) {
	addr := startSystem(t, nil)
	for _, workload := range []string{WorkloadLoginStorm, WorkloadResumeStorm} {
		t.Run(workload, func(t *testing.T) {
			cfg := stormConfig(addr, workload)
			cfg.ServerPIDs = []int{os.Getpid()} // the server runs in this process
			r := runConnBench(t, cfg)
			sr := r.Storm
			if sr != nil && (sr.ServerCPU == nil || sr.ServerCPU.Per != "login" || sr.ServerCPU.Count != sr.Logins) {
				t.Errorf("server cpu: %+v, want the CPU per login of %d", sr.ServerCPU, sr.Logins)
			}
			if !r.OK || sr == nil || len(r.Problems()) != 0 {
				t.Fatalf("not OK: %v", r.Problems())
			}
			if sr.Logins != int64(cfg.Users) || sr.Failed != 0 || sr.LoginsPerSec <= 0 ||
				sr.Latency.Count != int64(cfg.Users) || sr.ConnectLatency.Count != int64(cfg.Users) {
				t.Fatalf("logins %d of %d, failed %d, %.1f/s, latencies %d, connects %d", sr.Logins, cfg.Users,
					sr.Failed, sr.LoginsPerSec, sr.Latency.Count, sr.ConnectLatency.Count)
			}
			if resume := workload == WorkloadResumeStorm; resume != (sr.FirstLoginS > 0) {
				t.Errorf("first logins took %.3f s", sr.FirstLoginS)
			}
		})
	}
}

// A login that fails (a wrong password, a revoked or a made-up resume
// token) fails the run, and the report says how.
func TestStormFailures(t *testing.T) {
	addr := startSystem(t, nil)
	const broken = 3
	tests := []struct {
		name     string
		workload string
		break_   func(t *testing.T, ctx context.Context, a *account, c *leanConn)
	}{
		{"wrong password", WorkloadLoginStorm, func(t *testing.T, _ context.Context, a *account, _ *leanConn) {
			a.password = "not the password"
		}},
		{"revoked token", WorkloadResumeStorm, func(t *testing.T, ctx context.Context, _ *account, c *leanConn) {
			// LOGINOUT revokes the session's resume token.
			if _, err := c.call(ctx, newScratch(), func(id int64) any {
				return map[string]any{"msgid": wire.Loginout, "reqid": id}
			}); err != nil {
				t.Errorf("logout: %v", err)
			}
		}},
		{"made-up token", WorkloadResumeStorm, func(t *testing.T, _ context.Context, a *account, _ *leanConn) {
			a.token = strings.Repeat("0", len(a.token))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := stormConfig(addr, tt.workload)
			cfg.Users = 20
			cfg.hooks = &testHooks{beforeStorm: func(ctx context.Context, accts []account, conns []*leanConn) {
				for i := range broken {
					var c *leanConn
					if conns != nil {
						c = conns[i]
					}
					tt.break_(t, ctx, &accts[i], c)
				}
			}}
			r := runConnBench(t, cfg)
			sr := r.Storm
			if r.OK || sr.Failed != broken || sr.Logins != int64(cfg.Users-broken) {
				t.Fatalf("ok %v, failed %d, logins %d: want %d failed logins and a failed run",
					r.OK, sr.Failed, sr.Logins, broken)
			}
			if got := sr.Failures["login: errno 1"]; got != broken {
				t.Errorf("failures %v: want %d times errno 1 (invalid id or password)", sr.Failures, broken)
			}
			if p := strings.Join(r.Problems(), ", "); p != "3 failed logins" {
				t.Errorf("problems %q", p)
			}
		})
	}
}

func TestConnWorkloadConfig(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *Config)
		ok   bool
	}{
		{"idle defaults", func(c *Config) { c.Workload = WorkloadIdle }, true},
		{"idle without conns", func(c *Config) { c.Workload, c.Conns = WorkloadIdle, 0 }, false},
		{"idle without ping interval", func(c *Config) { c.Workload, c.PingInterval = WorkloadIdle, 0 }, false},
		{"idle negative pid", func(c *Config) { c.Workload, c.GatewayPID = WorkloadIdle, -1 }, false},
		{"idle timeout below duration", func(c *Config) { c.Workload, c.Timeout = WorkloadIdle, c.Duration }, false},
		{"login-storm defaults", func(c *Config) { c.Workload = WorkloadLoginStorm }, true},
		{"resume-storm defaults", func(c *Config) { c.Workload = WorkloadResumeStorm }, true},
		{"storm without users", func(c *Config) { c.Workload, c.Users = WorkloadLoginStorm, 0 }, false},
		{"storm without concurrency", func(c *Config) { c.Workload, c.Concurrency = WorkloadResumeStorm, 0 }, false},
		{"unknown workload", func(c *Config) { c.Workload = "stampede" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
