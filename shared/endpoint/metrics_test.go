package endpoint_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/eventually"
)

// TestMetrics counts each answer once, by endpoint and result (ok or the
// error's code), with its latency, whoever answers: JSON's handler, a
// malformed request, a handler answering on its own.
func TestMetrics(t *testing.T) {
	nc, svc := newService(t, "counted")
	reg := prometheus.NewRegistry()
	m, err := endpoint.NewMetrics(reg, "counted")
	if err != nil {
		t.Fatal(err)
	}
	runner := newRunner(2)
	t.Cleanup(runner.Close)
	type req struct{ N int }
	echo := endpoint.JSON(runner, "echo", func(_ context.Context, r *req) (*req, error) {
		switch {
		case r.N < 0:
			return nil, api.Errorf(api.CodeBadRequest, "negative")
		case r.N == 0:
			return nil, errors.New("boom") // answered internal
		}
		return r, nil
	})
	err = endpoint.Add(svc, nc, m,
		endpoint.Spec{Name: "echo", Subject: "test.echo", Description: "echo", Handler: echo},
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{"N":1}`, `{"N":2}`, `{"N":-1}`, `{"N":0}`, `not json`} {
		if _, err := nc.Request("test.echo", []byte(body), 5*time.Second); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
	}
	// An answer is counted once it is sent, so maybe after the caller has
	// it.
	eventually.True(t, 5*time.Second, func() bool {
		return metricValue(t, reg, "natter_request_duration_seconds",
			map[string]string{"service": "counted", "endpoint": "echo"}) == 5
	}, "5 latency samples")
	for result, want := range map[string]float64{"ok": 2, "bad_request": 2, "internal": 1} {
		if got := metricValue(t, reg, "natter_requests_total",
			map[string]string{"service": "counted", "endpoint": "echo", "result": result}); got != want {
			t.Errorf("requests with result %s = %v, want %v", result, got, want)
		}
	}
}

// metricValue returns the value of the counter or gauge name with labels
// (for a histogram: its sample count) in reg; 0 if there is none.
func metricValue(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			return sampleValue(m)
		}
	}
	return 0
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}
