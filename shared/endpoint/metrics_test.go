package endpoint_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/metricstest"
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
	eventually.NoError(t, 5*time.Second, func() error {
		if got := metricstest.Value(t, reg, "natter_request_duration_seconds",
			map[string]string{"service": "counted", "endpoint": "echo"}); got != 5 {
			return fmt.Errorf("still waiting for 5 latency samples: got %v, want == 5", got)
		}
		return nil
	})
	for result, want := range map[string]float64{"ok": 2, "bad_request": 2, "internal": 1} {
		if got := metricstest.Value(t, reg, "natter_requests_total",
			map[string]string{"service": "counted", "endpoint": "echo", "result": result}); got != want {
			t.Errorf("requests with result %s = %v, want %v", result, got, want)
		}
	}
}
