package endpoint

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// resultOK is the result label of a request answered without an error; an
// error answer's result is its api.Code (bad_request, busy, internal, ...).
const resultOK = "ok"

// Metrics counts the requests a service's endpoints answer. Build it with
// NewMetrics and hand it to Add.
type Metrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

// NewMetrics registers the request metrics of service on reg:
//
//   - natter_requests_total{service, endpoint, result}: requests answered,
//     result ok or the error's api.Code (a bounded set);
//   - natter_request_duration_seconds{service, endpoint}: from the request's
//     delivery to the endpoint's handler to its answer, the wait for a free
//     handler slot included.
func NewMetrics(reg prometheus.Registerer, service string) (*Metrics, error) {
	labels := prometheus.Labels{"service": service}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "natter_requests_total",
			Help:        "Requests answered by a service endpoint, by result: ok or the error code.",
			ConstLabels: labels,
		}, []string{"endpoint", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "natter_request_duration_seconds",
			Help:        "Time from a request's delivery to its endpoint handler to its answer.",
			ConstLabels: labels,
			Buckets:     prometheus.ExponentialBuckets(0.0001, 2.5, 12), // 100 µs to ~6 s
		}, []string{"endpoint"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.seconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register request metrics: %w", err)
		}
	}
	return m, nil
}

// observer counts the answers of one endpoint.
type observer struct {
	name    string
	m       *Metrics
	ok      prometheus.Counter
	seconds prometheus.Observer
}

// endpoint returns the observer of endpoint name (nil for a nil m).
func (m *Metrics) endpoint(name string) *observer {
	if m == nil {
		return nil
	}
	return &observer{
		name:    name,
		m:       m,
		ok:      m.requests.WithLabelValues(name, resultOK),
		seconds: m.seconds.WithLabelValues(name),
	}
}

func (o *observer) answered(result string, start time.Time) {
	if result == resultOK {
		o.ok.Inc()
	} else {
		o.m.requests.WithLabelValues(o.name, result).Inc()
	}
	o.seconds.Observe(time.Since(start).Seconds())
}
