package endpoint

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/ops"
	"github.com/natter-chat/natter/shared/sqldb"
)

// resultOK is the result label of a request answered without an error; an
// error answer's result is its api.Code (bad_request, busy, internal, ...).
const resultOK = "ok"

// results are the result labels every endpoint's series start with (at
// 0), so that a rate of errors exists before the first error.
var results = []string{resultOK, string(api.CodeBadRequest), string(api.CodeNotFound), string(api.CodeNameTaken),
	string(api.CodeBadLogin), string(api.CodeSessionLive), string(api.CodeBusy), string(api.CodeInternal)}

// Metrics counts the requests a service's endpoints answer. Build it with
// NewMetrics and hand it to Add.
type Metrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

// NewMetrics registers the request metrics of service on reg:
//
//   - natter_requests_total{service, endpoint, result}: requests answered,
//     result ok or the error's api.Code (a bounded set; every endpoint has
//     a series for each code from the start, at 0);
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
			Buckets:     ops.DurationBuckets(),
		}, []string{"endpoint"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.seconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register request metrics: %w", err)
		}
	}
	return m, nil
}

// ServiceMetrics are the metrics every service has, labelled
// service=<name>: its endpoints' answers (Endpoints, for Add or
// InstanceConfig) and its database's work (DB, for sqldb.DB.WithMetrics).
// Register adds the service's own.
type ServiceMetrics struct {
	Endpoints *Metrics
	DB        *sqldb.Metrics

	service string
	reg     prometheus.Registerer
}

// NewServiceMetrics registers the request metrics (NewMetrics) and the
// database metrics (sqldb.NewMetrics) of service on reg (nil: a registry
// of their own, counted but not served).
func NewServiceMetrics(reg prometheus.Registerer, service string) (ServiceMetrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := ServiceMetrics{service: service, reg: reg}
	var err error
	if m.Endpoints, err = NewMetrics(reg, service); err != nil {
		return ServiceMetrics{}, err
	}
	if m.DB, err = sqldb.NewMetrics(reg, service); err != nil {
		return ServiceMetrics{}, err
	}
	return m, nil
}

// Register registers the service's own metrics where the service's
// request and database metrics are.
func (m ServiceMetrics) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return fmt.Errorf("register %s metrics: %w", m.service, err)
		}
	}
	return nil
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
	for _, r := range results {
		m.requests.WithLabelValues(name, r)
	}
	return &observer{
		name:    name,
		m:       m,
		ok:      m.requests.WithLabelValues(name, resultOK),
		seconds: m.seconds.WithLabelValues(name),
	}
}

func (o *observer) answered(result string, took time.Duration) {
	if result == resultOK {
		o.ok.Inc()
	} else {
		o.m.requests.WithLabelValues(o.name, result).Inc()
	}
	o.seconds.Observe(took.Seconds())
}
