package friend

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
)

// metrics are the friend service's Prometheus metrics, labelled
// service="friend"; the presence fan-out's are read from its counters.
type metrics struct {
	reg       prometheus.Registerer
	endpoints *endpoint.Metrics
	db        *sqldb.Metrics
}

// newMetrics registers the service's request and database metrics on reg
// (nil: a registry of their own, counted but not served).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{reg: reg}
	var err error
	if m.endpoints, err = endpoint.NewMetrics(reg, subject.FriendService); err != nil {
		return nil, err
	}
	if m.db, err = sqldb.NewMetrics(reg, subject.FriendService); err != nil {
		return nil, err
	}
	return m, nil
}

// watchPresence registers the metrics of the presence fan-out p.
func (m *metrics) watchPresence(p *presence) error {
	labels := prometheus.Labels{"service": subject.FriendService}
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	cs := []prometheus.Collector{
		counter("natter_friend_presence_events_total", "Presence events (a user came online or went offline) received from the user service.", &p.events),
		counter("natter_friend_presence_malformed_total", "Presence events dropped as malformed.", &p.malformed),
		counter("natter_friend_presence_fanouts_total", "Users whose latest presence was fanned out to their friends (once per coalescing window).", &p.fanouts),
		counter("natter_friend_presence_notices_total", "Presence notices published to friends' subjects.", &p.notices),
		counter("natter_friend_presence_lookup_failures_total", "Friend lookups for a presence fan-out that failed (retried in the next window).", &p.failures),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "natter_friend_presence_pending_users",
			Help:        "Users with presence events waiting for the next fan-out.",
			ConstLabels: labels,
		}, func() float64 { return float64(p.pendingUsers()) }),
	}
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return fmt.Errorf("register friend metrics: %w", err)
		}
	}
	return nil
}
