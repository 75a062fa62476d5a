// Package ops serves a process's operational HTTP endpoints on their own
// address (--http), apart from client traffic:
//
//   - /healthz: 200 while the process runs (liveness);
//   - /readyz: 200 when every readiness check passes and the process is not
//     draining, else 503 with the reasons (readiness: take traffic or not);
//   - /metrics: the Prometheus registry, with Go runtime and process metrics.
package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/natter-chat/natter/shared/buildinfo"
)

// DurationBuckets are the buckets of natter's request and database
// duration histograms: 100 µs to ~15 s in steps of 2.5x, so that the
// slowest answer a caller still waits for (--request-timeout, 5 s by
// default; a database statement's timeout) lands in a finite bucket and a
// p99 near a timeout is seen, not capped.
func DurationBuckets() []float64 { return prometheus.ExponentialBuckets(0.0001, 2.5, 14) }

// checkTimeout bounds each readiness check.
const checkTimeout = 2 * time.Second

// NewRegistry returns a registry holding the Go runtime and process
// collectors and natter_build_info; components add their own metrics to
// it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		BuildInfo())
	return reg
}

// BuildInfo is natter_build_info{version, revision, goversion}, always 1:
// which build a process runs (join on it to compare versions in a
// rollout).
func BuildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "natter_build_info",
		Help: "Always 1; the labels say which build the process runs: version (the release), revision (the VCS revision, \"\" when not recorded) and goversion.",
		ConstLabels: prometheus.Labels{"version": buildinfo.Release, "revision": buildinfo.Revision(),
			"goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// CheckFunc reports why the process cannot serve yet (nil: it can).
type CheckFunc func(ctx context.Context) error

// Server is the operational endpoints of one process.
type Server struct {
	reg      *prometheus.Registry
	log      *slog.Logger
	draining atomic.Bool

	mu     sync.Mutex
	checks map[string]CheckFunc

	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// New returns a Server for reg (nil: a fresh NewRegistry). It serves
// nothing until Listen or Handler is used.
func New(reg *prometheus.Registry, log *slog.Logger) *Server {
	if reg == nil {
		reg = NewRegistry()
	}
	return &Server{reg: reg, log: log, checks: map[string]CheckFunc{}}
}

// Registry is where the process's metrics live.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// AddCheck adds (or replaces) a named readiness check.
func (s *Server) AddCheck(name string, f CheckFunc) {
	s.mu.Lock()
	s.checks[name] = f
	s.mu.Unlock()
}

// Starting adds the readiness check name, failing ("starting") until
// started is called: the process's own part, ready once it has started.
func (s *Server) Starting(name string) (started func()) {
	var done atomic.Bool
	s.AddCheck(name, func(context.Context) error {
		if !done.Load() {
			return errStarting
		}
		return nil
	})
	return func() { done.Store(true) }
}

var errStarting = errors.New("starting")

// SetDraining marks the process as going away: /readyz fails from now on,
// so load balancers stop sending it new work, while /healthz still passes.
func (s *Server) SetDraining() { s.draining.Store(true) }

// Draining reports whether SetDraining was called.
func (s *Server) Draining() bool { return s.draining.Load() }

// Ready runs every check and returns what fails, joined (nil: ready).
func (s *Server) Ready(ctx context.Context) error {
	if s.draining.Load() {
		return errors.New("draining")
	}
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	checks := make([]CheckFunc, len(names))
	sort.Strings(names)
	for i, n := range names {
		checks[i] = s.checks[n]
	}
	s.mu.Unlock()
	var errs []error
	for i, f := range checks {
		cctx, cancel := context.WithTimeout(ctx, checkTimeout)
		err := f(cctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", names[i], err))
		}
	}
	return errors.Join(errs...)
}

// Handler serves /healthz, /readyz and /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := s.Ready(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", strings.ReplaceAll(err.Error(), "\n", "; "))
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
		Registry:          s.reg,
		EnableOpenMetrics: true,
	}))
	return mux
}

// Listen serves Handler on addr (host:port) until Close.
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("ops http server", "err", err)
		}
	}()
	s.log.Info("serving /healthz, /readyz and /metrics", "addr", ln.Addr().String())
	return nil
}

// Addr is the address Listen bound (nil before Listen).
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown is Close with a deadline of its own, timeout from now (ctx's
// values kept, its end not: the process is stopping), for a binary's last
// deferred step.
func (s *Server) Shutdown(ctx context.Context, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := s.Close(cctx); err != nil {
		return fmt.Errorf("close ops endpoints: %w", err)
	}
	return nil
}

// Close stops serving (a no-op without Listen).
func (s *Server) Close(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
