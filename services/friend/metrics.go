package friend

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/shared/subject"
)

// presenceMetrics are the metrics of the presence fan-out p, labelled
// service="friend", read from its counters; the service's request and
// database metrics are endpoint.ServiceMetrics.
func presenceMetrics(p *presence) []prometheus.Collector {
	labels := prometheus.Labels{"service": subject.FriendService}
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	return []prometheus.Collector{
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
}
