package loadgen

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// StormReport is the outcome of login-storm and resume-storm.
type StormReport struct {
	Users       int     `json:"users"`
	Concurrency int     `json:"concurrency"`
	RegisterS   float64 `json:"register_s"` // registering the users, not measured
	// resume-storm: the password logins that got the resume tokens (not
	// measured), and resetting all their connections at once.
	FirstLoginS float64 `json:"first_login_s,omitempty"`
	ResetS      float64 `json:"reset_s,omitempty"`

	// The storm: every user logs in on a new connection.
	StormS         float64          `json:"storm_s"` // the first connect to the last answer
	Logins         int64            `json:"logins"`  // succeeded
	Failed         int64            `json:"failed"`  // connects and logins that failed
	Failures       map[string]int64 `json:"failures,omitempty"`
	LoginsPerSec   float64          `json:"logins_per_s"`
	Latency        Latency          `json:"latency_ms"`         // LOGIN written -> LOGIN_ACK read
	ConnectLatency Latency          `json:"connect_latency_ms"` // TCP connect
	ClientCPU      float64          `json:"client_cpu_cores"`   // during the storm; -1: unknown
	// The server processes' CPU during the storm, per login
	// (--server-pids).
	ServerCPU *ServerCPU `json:"server_cpu,omitempty"`
}

// Problems lists what failed, empty for a clean run.
func (r *StormReport) Problems() []string {
	if n := int64(r.Users) - r.Logins; n > 0 {
		return []string{fmt.Sprintf("%d failed logins", n)}
	}
	return nil
}

// Storm runs login-storm or resume-storm. cfg.Users users are registered
// first (not measured). login-storm: each logs in with its password on a
// new connection, cfg.Concurrency at a time, as fast as the server takes
// them. resume-storm: each logs in with its password first (not measured)
// and keeps the resume token of its LOGIN_ACK; then every connection is
// reset at once, as if their gateway had died, and each logs in again with
// its token on a new connection, cfg.Concurrency at a time. Measured: logins
// per second and the latency of each login. Any failed login fails the run.
// The connections stay open until the end of the storm.
func Storm(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	cfg = cfg.withDefaults()
	resume := cfg.Workload == WorkloadResumeStorm
	m, err := startMassRun(ctx, cfg, cfg.Users, nil)
	if err != nil {
		return nil, err
	}
	defer m.close()
	ctx, run, d, meter, accts, stopProgress := m.ctx, m.run, m.d, m.meter, m.accts, m.stopProgress
	sr := &StormReport{
		Users:       cfg.Users,
		Concurrency: cfg.Concurrency,
		RegisterS:   m.registerS,
		ClientCPU:   -1,
	}
	opts := loginOpts{d: d, addrs: cfg.Addrs, concurrency: cfg.Concurrency, meter: meter, log: log}
	if resume {
		meter.begin("first login", "logged in", cfg.Users)
		o := opts
		o.keepToken = true
		conns, st, took := loginAll(ctx, accts, o)
		sr.FirstLoginS = took.Seconds()
		if n := st.failed.Load(); n > 0 || ctx.Err() != nil {
			resetAll(conns)
			if ctx.Err() != nil {
				return nil, fmt.Errorf("setup: %w", context.Cause(ctx))
			}
			return nil, fmt.Errorf("setup: %d of %d password logins failed: %s", n, cfg.Users,
				reasonList(st.failureReasons()))
		}
		if h := cfg.hooks; h != nil && h.beforeStorm != nil {
			h.beforeStorm(ctx, accts, conns)
		}
		resetStart := time.Now()
		resetAll(conns)
		sr.ResetS = time.Since(resetStart).Seconds()
	} else if h := cfg.hooks; h != nil && h.beforeStorm != nil {
		h.beforeStorm(ctx, accts, nil)
	}

	phase := "login storm"
	if resume {
		phase = "resume storm"
		opts.useToken = true
	}
	meter.begin(phase, "logged in", cfg.Users)
	cpu := newCPUMeter()
	server := startWindowMeter(cfg.ServerPIDs, time.Now())
	conns, st, took := loginAll(ctx, accts, opts)
	sr.ClientCPU, _ = cpu.since()
	server.end()
	if sr.ServerCPU, err = server.result("login", st.ok.Load()); err != nil {
		log.Warn("server cpu not measured", "err", err)
	}
	defer resetAll(conns)
	stopProgress()
	sr.StormS, sr.Logins, sr.Failed = took.Seconds(), st.ok.Load(), st.failed.Load()
	sr.Failures = st.failureReasons()
	sr.Latency, sr.ConnectLatency = st.latencies()
	if took > 0 {
		sr.LoginsPerSec = float64(sr.Logins) / took.Seconds()
	}
	r := &Report{Workload: cfg.Workload, Addrs: cfg.Addrs, RunID: run, SourceAddrs: d.names(), Storm: sr}
	if ctx.Err() != nil {
		return stopped(ctx, r)
	}
	r.OK = len(sr.Problems()) == 0
	return r, nil
}

// reasonList formats failure counts by kind.
func reasonList(m map[string]int64) string {
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
