package offline

import (
	"maps"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/subject"
)

// metrics are the offline service's Prometheus metrics, labelled
// service="offline".
type metrics struct {
	endpoint.ServiceMetrics

	// The store outcomes: each counted once, in storeStats, which
	// $SRV.STATS reports too.
	stored        prometheus.Collector
	duplicates    prometheus.Collector
	storeFailures prometheus.Collector
	storeBusy     prometheus.Collector
	refused       map[string]prometheus.Collector // by reason

	entries     prometheus.Counter
	pushed      prometheus.Counter
	pushErrors  prometheus.Counter
	batchSize   prometheus.Histogram
	writerBusy  prometheus.Counter
	ackRequests prometheus.Counter
	acks        prometheus.Counter
	pruned      prometheus.Counter
}

// Reasons a store is refused (the reason label of
// natter_offline_store_refused_total).
const (
	refusedInboxFull   = "inbox_full"
	refusedSendRate    = "send_rate"
	refusedStorageFull = "storage_full"
)

// newMetrics registers the service's metrics on reg (nil: a registry of
// their own, counted but not served); queueLen reports the store queue's
// length, syncs the syncs of the database's WAL, st the store outcomes,
// full whether stores are refused for want of space, free the space left
// (NaN: not known).
func newMetrics(reg prometheus.Registerer, queueLen, syncs func() float64, st *storeStats, full, free func() float64) (*metrics, error) {
	sm, err := endpoint.NewServiceMetrics(reg, subject.OfflineService)
	if err != nil {
		return nil, err
	}
	labels := prometheus.Labels{"service": subject.OfflineService}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
	}
	outcome := func(name, help string, v *atomic.Int64, extra prometheus.Labels) prometheus.Collector {
		l := maps.Clone(labels)
		maps.Copy(l, extra)
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: l},
			func() float64 { return float64(v.Load()) })
	}
	const refusedHelp = "Store requests refused, by reason: inbox_full (the recipient's inbox, or every recipient's, holds its limit), send_rate (the sender passed its byte rate), storage_full (no space left; retry later)."
	m := &metrics{
		ServiceMetrics: sm,
		stored:         outcome("natter_offline_messages_stored_total", "Chat messages stored (each once, whatever its number of recipients).", &st.stored, nil),
		duplicates:     outcome("natter_offline_duplicates_total", "Store requests answered as duplicates (a sender's retry of a stored cid).", &st.duplicates, nil),
		storeFailures:  outcome("natter_offline_store_failures_total", "Store requests answered with an error after they were queued (nothing stored; the sender retries).", &st.failed, nil),
		storeBusy:      outcome("natter_offline_store_busy_total", "Store requests answered busy: the queue was full or the service stopping.", &st.busy, nil),
		refused: map[string]prometheus.Collector{
			refusedInboxFull:   outcome("natter_offline_store_refused_total", refusedHelp, &st.inboxFull, prometheus.Labels{"reason": refusedInboxFull}),
			refusedSendRate:    outcome("natter_offline_store_refused_total", refusedHelp, &st.sendRate, prometheus.Labels{"reason": refusedSendRate}),
			refusedStorageFull: outcome("natter_offline_store_refused_total", refusedHelp, &st.storageFull, prometheus.Labels{"reason": refusedStorageFull}),
		},
		entries:     counter("natter_offline_entries_stored_total", "Inbox entries stored: one per recipient of each stored message."),
		pushed:      counter("natter_offline_entries_pushed_total", "Inbox entries published to their recipient's subject after the commit."),
		pushErrors:  counter("natter_offline_push_errors_total", "Inbox entries that could not be published (the recipient fetches them later)."),
		ackRequests: counter("natter_offline_ack_requests_total", "Ack requests handled."),
		acks:        counter("natter_offline_acks_total", "Inbox acknowledgements (one user's inbox up to a seq) in ack requests handled."),
		pruned:      counter("natter_offline_pruned_entries_total", "Acknowledged inbox entries deleted after the retention."),
		writerBusy: counter("natter_offline_writer_busy_seconds_total",
			"Wall time the batch writers spent writing batches (a writer busy all the time adds 1 per second: the queue, not the database, then sets the pace)."),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "natter_offline_store_batch_size",
			Help:        "Store requests written in one transaction.",
			ConstLabels: labels,
			Buckets:     prometheus.ExponentialBuckets(1, 2, 14), // 1 to 8192
		}),
	}
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "natter_offline_store_queue_length",
		Help:        "Store requests waiting for a batch writer.",
		ConstLabels: labels,
	}, queueLen)
	walSyncs := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "natter_offline_wal_syncs_total",
		Help:        "SQLite: syncs of the WAL after the writers' commits (one covers every commit before it; fewer than the batches when the writers run ahead).",
		ConstLabels: labels,
	}, syncs)
	fullGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "natter_offline_store_full",
		Help:        "1 while stores are refused because the storage is full (less than --store-min-free left on the database's filesystem, or the database answered that it is full); fetches and acks go on.",
		ConstLabels: labels,
	}, full)
	freeGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "natter_offline_store_free_bytes",
		Help:        "SQLite: bytes left on the database's filesystem at the last check (NaN on MySQL).",
		ConstLabels: labels,
	}, free)
	if err := m.Register(m.stored, m.duplicates, m.entries, m.pushed, m.pushErrors,
		m.storeFailures, m.storeBusy, m.batchSize, m.ackRequests, m.acks, m.pruned, m.writerBusy, queue, walSyncs,
		m.refused[refusedInboxFull], m.refused[refusedSendRate], m.refused[refusedStorageFull], fullGauge, freeGauge); err != nil {
		return nil, err
	}
	return m, nil
}
