package group

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/subject"
)

// metrics are the group service's Prometheus metrics, labelled
// service="group".
type metrics struct {
	endpoint.ServiceMetrics

	created    prometheus.Counter
	membership *prometheus.CounterVec
	messages   prometheus.Counter
	recipients prometheus.Counter
}

// newMetrics registers the service's metrics on reg (nil: a registry of
// their own, counted but not served), the member cache's read from cache.
func newMetrics(reg prometheus.Registerer, cache *memberCache) (*metrics, error) {
	sm, err := endpoint.NewServiceMetrics(reg, subject.GroupService)
	if err != nil {
		return nil, err
	}
	labels := prometheus.Labels{"service": subject.GroupService}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
	}
	m := &metrics{
		ServiceMetrics: sm,
		created:        counter("natter_group_created_total", "Groups created."),
		membership: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "natter_group_membership_changes_total",
			Help:        "Members who joined (change join) or left (change leave) a group.",
			ConstLabels: labels,
		}, []string{"change"}),
		messages:   counter("natter_group_messages_total", "Group messages stored for the other members (one batched offline store each; duplicates not counted)."),
		recipients: counter("natter_group_recipients_total", "Inbox entries group messages were stored for: the members other than the sender."),
	}
	m.membership.WithLabelValues("join")
	m.membership.WithLabelValues("leave")
	cs := []prometheus.Collector{m.created, m.membership, m.messages, m.recipients,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "natter_group_cache_hits_total", ConstLabels: labels,
			Help: "Group sends whose member list came from the cache (its version was current).",
		}, func() float64 { return float64(cache.hits.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "natter_group_cache_reloads_total", ConstLabels: labels,
			Help: "Member lists read from the database for a send (not cached, or the version had changed).",
		}, func() float64 { return float64(cache.reloads.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "natter_group_cached_groups", ConstLabels: labels,
			Help: "Groups whose member lists are cached.",
		}, func() float64 { return float64(cache.len()) }),
	}
	if err := m.Register(cs...); err != nil {
		return nil, err
	}
	return m, nil
}
