package ops

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/shared/buildinfo"
	"github.com/natter-chat/natter/shared/metricstest"
)

func TestEndpoints(t *testing.T) {
	s := New(nil, slog.New(slog.DiscardHandler))
	hits := prometheus.NewCounter(prometheus.CounterOpts{Name: "natter_test_hits_total", Help: "test"})
	s.Registry().MustRegister(hits)
	hits.Add(3)
	var dbDown atomic.Bool
	s.AddCheck("nats", func(context.Context) error { return nil })
	s.AddCheck("database", func(context.Context) error {
		if dbDown.Load() {
			return errors.New("connection refused")
		}
		return nil
	})
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	base := "http://" + s.Addr().String()

	if code, body := metricstest.Get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
	if code, _ := metricstest.Get(t, base+"/readyz"); code != 200 {
		t.Errorf("readyz while ready: %d", code)
	}
	dbDown.Store(true)
	if code, body := metricstest.Get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "database: connection refused") {
		t.Errorf("readyz with the database down: %d %q", code, body)
	}
	dbDown.Store(false)
	s.SetDraining()
	if code, body := metricstest.Get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("readyz while draining: %d %q", code, body)
	}
	if code, _ := metricstest.Get(t, base+"/healthz"); code != 200 {
		t.Errorf("healthz while draining: %d", code)
	}
	code, body := metricstest.Get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, "natter_test_hits_total 3") || !strings.Contains(body, "go_goroutines") ||
		!strings.Contains(body, "process_resident_memory_bytes") {
		t.Errorf("metrics: %d\n%s", code, body)
	}
}

func TestCheckTimesOut(t *testing.T) {
	s := New(nil, slog.New(slog.DiscardHandler))
	s.AddCheck("stuck", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	start := time.Now()
	err := s.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "stuck") {
		t.Fatalf("Ready = %v, want the stuck check's error", err)
	}
	if d := time.Since(start); d > 3*checkTimeout {
		t.Errorf("Ready took %v", d)
	}
}

// TestDurationBucketsCoverTimeouts: the duration histograms' last finite
// bucket is above the longest wait a request can have (--request-timeout,
// 5 s by default; services and the database give up before it), so a
// request that takes nearly the timeout is not lumped into +Inf.
func TestDurationBucketsCoverTimeouts(t *testing.T) {
	const defaultRequestTimeout = 5 * time.Second
	b := DurationBuckets()
	if top := b[len(b)-1]; top < 2*defaultRequestTimeout.Seconds() {
		t.Errorf("last bucket %v s, want at least twice the request timeout (%v)", top, defaultRequestTimeout)
	}
	if b[0] > 0.0001 {
		t.Errorf("first bucket %v s: sub-millisecond answers need a bucket", b[0])
	}
}

// TestBuildInfo: every registry NewRegistry makes has natter_build_info 1
// with the release.
func TestBuildInfo(t *testing.T) {
	fams, err := NewRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "natter_build_info" {
			continue
		}
		m := f.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if m.GetGauge().GetValue() != 1 || labels["version"] != buildinfo.Release || !strings.HasPrefix(labels["goversion"], "go") {
			t.Errorf("natter_build_info %v %v", labels, m.GetGauge().GetValue())
		}
		return
	}
	t.Error("no natter_build_info")
}

// TestStarting: the check fails until its part has started; Shutdown
// without Listen closes nothing.
func TestStarting(t *testing.T) {
	s := New(nil, slog.New(slog.DiscardHandler))
	started := s.Starting("part")
	if err := s.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "starting") {
		t.Errorf("before start: Ready() = %v, want starting", err)
	}
	started()
	if err := s.Ready(context.Background()); err != nil {
		t.Errorf("after start: Ready() = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx, time.Second); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
