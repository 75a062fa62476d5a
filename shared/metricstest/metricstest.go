// Package metricstest reads Prometheus metrics back in tests: from a
// registry (Value, HistogramSum), or over HTTP as a scraper or a probe
// sees a process's operational endpoints (Get).
package metricstest

import (
	"io"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Value returns the value of the first series of the counter or gauge name
// in g whose labels include labels (for a histogram: its sample count); 0 if
// there is none.
func Value(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	return sampleValue(find(t, g, name, labels))
}

// HistogramSum returns the sum of the samples of the first series of the
// histogram name in g whose labels include labels; 0 if there is none.
func HistogramSum(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	return find(t, g, name, labels).GetHistogram().GetSampleSum()
}

// find returns the first series of name in g whose labels include labels
// (nil: none).
func find(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	fams, err := g.Gather()
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
			return m
		}
	}
	return nil
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m == nil:
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// Get returns the status and body of a GET of url (/metrics, /healthz,
// /readyz); a request that fails fails the test.
func Get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}
