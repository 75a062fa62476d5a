// Package offline is natter's offline service, the durable per-user inbox.
// Every chat message is committed to the database before its sender is
// answered, with an entry and a seq of its own in each recipient's inbox,
// and kept until the recipient acknowledges it.
//
// The service answers three micro endpoints (queue group "offline", so any
// number of instances share one database):
//
//   - store: decoded and checked in the endpoint's delivery goroutine and
//     put on a writer's bounded queue (full: busy at once): one-to-one
//     messages by recipient, group messages by sender. A batch writer
//     takes whatever is queued, stores it in one transaction and hands the
//     committed batch to its publisher, which publishes each new entry to
//     its recipient's subject.User and answers the senders while the
//     writer commits the next batch.
//   - fetch: a page of an inbox after a seq.
//   - ack: acknowledge inboxes cumulatively; queued like a store and
//     committed with the next batch (on SQLite in its transaction).
//
// A pruner deletes acknowledged entries older than the retention.
package offline

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natter-chat/natter/services/offline/internal/inbox"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
)

// Endpoint names.
const (
	epStore     = "store"
	epStoreMany = "storemany"
	epFetch     = "fetch"
	epAck       = "ack"
)

// Pending limits of the endpoint subscriptions: past them NATS drops
// requests and their callers time out.
const (
	storePendingMsgs  = 1 << 16
	storePendingBytes = 256 << 20
	otherPendingMsgs  = 1 << 12
	otherPendingBytes = 16 << 20
)

// pruneTimeout bounds one prune.
const pruneTimeout = 10 * time.Minute

// Service is a running offline service.
type Service struct {
	cfg      Config
	log      *slog.Logger
	nc       *nats.Conn
	store    *inbox.Store
	instance *endpoint.Instance
	runner   *endpoint.Runner
	metrics  *metrics

	// gate guards the writers' queues against a send after close:
	// handlers send under the read lock, Stop closes under the write lock.
	gate    sync.RWMutex
	closed  bool
	writers []*writer
	seed    maphash.Seed // partitions requests over the writers

	writing     sync.WaitGroup // the writers and their publishers
	pruner      sync.WaitGroup
	cancelPrune context.CancelFunc

	stats   storeStats
	rates   *senderRates
	storage *storage
}

// storeStats counts what the store endpoint did; they appear as the store
// endpoint's data in $SRV.STATS.
type storeStats struct {
	accepted   atomic.Int64 // requests queued
	busy       atomic.Int64 // requests answered busy (queue full or closed)
	batches    atomic.Int64 // StoreBatch calls
	maxBatch   atomic.Int64 // largest batch so far
	stored     atomic.Int64 // messages stored
	duplicates atomic.Int64 // requests answered as duplicates
	failed     atomic.Int64 // requests answered with an error
	// Refused requests, by reason.
	inboxFull   atomic.Int64
	sendRate    atomic.Int64
	storageFull atomic.Int64
}

// StoreStats is the data of the store endpoint in $SRV.STATS.
type StoreStats struct {
	QueueLen   int   `json:"queue_len"`
	QueueLimit int   `json:"queue_limit"`
	Accepted   int64 `json:"accepted"`
	Busy       int64 `json:"busy"`
	Batches    int64 `json:"batches"`
	MaxBatch   int64 `json:"max_batch"`
	Stored     int64 `json:"stored"`
	Duplicates int64 `json:"duplicates"`
	Failed     int64 `json:"failed"`
	// Refused: inbox full, sender's rate, storage full.
	InboxFull   int64 `json:"inbox_full"`
	SendRate    int64 `json:"send_rate"`
	StorageFull int64 `json:"storage_full"`
	// Full is true while stores are refused for want of space.
	Full bool `json:"full"`
}

// Start migrates the inbox tables, starts the batch writers and the pruner
// and registers the micro service on nc. The caller keeps nc and db and
// closes them after Stop.
func Start(ctx context.Context, nc *nats.Conn, db *sqldb.DB, cfg Config, log *slog.Logger) (*Service, error) {
	s, err := startService(ctx, nc, db, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("start offline service: %w", err)
	}
	return s, nil
}

func startService(ctx context.Context, nc *nats.Conn, db *sqldb.DB, cfg Config, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults(db.Dialect)
	s := &Service{
		cfg:  cfg,
		log:  log,
		nc:   nc,
		seed: maphash.MakeSeed(),
	}
	// Each writer's queue holds its share of QueueLimit.
	for range cfg.Writers {
		s.writers = append(s.writers, &writer{
			queue:   make(chan *item, max(cfg.QueueLimit/cfg.Writers, 1)),
			publish: make(chan *committed, publishAhead),
		})
	}
	s.rates = newSenderRates(cfg.SenderRate, cfg.SenderBurst)
	s.storage = newStorage(db, cfg.StoreMinFree, func(full bool, free int64) {
		if full {
			log.Error("storage full: stores refused (retry later); fetches and acks go on",
				"free_bytes", free, "min_free_bytes", cfg.StoreMinFree)
		} else {
			log.Info("storage has room again: stores resume", "free_bytes", free)
		}
	})
	m, err := newMetrics(cfg.Registerer, func() float64 { return float64(s.queueLen()) },
		func() float64 { return float64(db.WALSyncs()) }, &s.stats,
		func() float64 {
			if s.storage.full() {
				return 1
			}
			return 0
		}, s.storage.freeBytes)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.store = inbox.New(db.WithMetrics(m.DB), log)
	s.store.SetLimits(inbox.Limits{Count: max(cfg.InboxMaxMessages, 0), Bytes: max(cfg.InboxMaxBytes, 0)})
	if err := s.store.Migrate(ctx); err != nil {
		return nil, err
	}
	s.runner = endpoint.NewRunner(cfg.Concurrency, cfg.RequestTimeout, log)
	for _, w := range s.writers {
		s.writing.Go(func() { s.writeLoop(w) })
		s.writing.Go(func() { s.publishLoop(w) })
	}
	pruneCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancelPrune = cancel
	s.pruner.Go(func() { s.pruneLoop(pruneCtx) })
	s.pruner.Go(func() { s.storage.watch(pruneCtx) })

	s.instance, err = endpoint.Start(ctx, nc, endpoint.InstanceConfig{
		Name:         subject.OfflineService,
		Description:  "durable per-user inbox: stores chat messages before their senders are answered, until recipients acknowledge them",
		StatsHandler: s.endpointStats,
		Log:          log,
		Metrics:      m.Endpoints,
		Runners:      []*endpoint.Runner{s.runner},
		LogAttrs: []any{"batch_size", cfg.BatchSize, "queue_limit", cfg.QueueLimit, "writers", cfg.Writers,
			"retention", cfg.Retention, "inbox_max_messages", cfg.InboxMaxMessages, "inbox_max_bytes", cfg.InboxMaxBytes,
			"sender_rate", cfg.SenderRate, "sender_burst", cfg.SenderBurst, "store_min_free", cfg.StoreMinFree},
		Delivered: s.closeWriters,
		AfterStop: s.stopPruner,
	}, s.specs()...)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// StoreReady is a readiness check: it fails while stores are refused
// because the storage is full (fetches and acks still work).
func (s *Service) StoreReady(context.Context) error {
	if s.storage.full() {
		return errStorageFull
	}
	return nil
}

// errStorageFull is StoreReady's answer while the storage is full.
var errStorageFull = errors.New("storage full: stores refused until space is freed")

// specs are the service's endpoints. Every endpoint is answered from
// goroutines other than its delivery goroutine, so every handler gets
// detached requests (endpoint.Add detaches them).
func (s *Service) specs() []endpoint.Spec {
	return []endpoint.Spec{
		{Name: epStore, Subject: subject.OfflineStore,
			Description: "store a chat message in its recipients' inboxes; answered after the commit",
			Handler:     micro.HandlerFunc(s.handleStore), PendingMsgs: storePendingMsgs, PendingBytes: storePendingBytes},
		{Name: epStoreMany, Subject: subject.OfflineStoreMany,
			Description: "store several chat messages of one sender (a gateway's pipelined chats), each as store does, in order for each recipient; answered once every one is committed or refused, the results in the request's order",
			Handler:     micro.HandlerFunc(s.handleStoreMany), PendingMsgs: otherPendingMsgs, PendingBytes: storePendingBytes},
		{Name: epFetch, Subject: subject.OfflineFetch,
			Description: "read a page of an inbox after a seq (after < 0: after the acknowledged seq)",
			Handler:     endpoint.JSON(s.runner, epFetch, s.fetch), PendingMsgs: otherPendingMsgs, PendingBytes: otherPendingBytes},
		{Name: epAck, Subject: subject.OfflineAck,
			Description: "acknowledge inboxes cumulatively up to a seq; answered after the commit",
			Handler:     micro.HandlerFunc(s.handleAck), PendingMsgs: otherPendingMsgs, PendingBytes: otherPendingBytes},
	}
}

// Stop stops taking requests, stores and answers every store request
// already received, waits for running fetches and acks and stops the
// writers and the pruner. It does not close the NATS connection or the
// database. Stop is safe to call more than once.
func (s *Service) Stop() error { return s.instance.Stop() }

// closeWriters closes the writers' queues once every request delivered
// before Stop has passed its handler (a handler that still runs finds the
// queue closed and answers busy) and waits for the writers and their
// publishers, which store and answer what is queued first.
func (s *Service) closeWriters() {
	s.gate.Lock()
	s.closed = true
	for _, w := range s.writers {
		close(w.queue)
	}
	s.gate.Unlock()
	s.writing.Wait()
}

// stopPruner stops the pruner and the storage watch.
func (s *Service) stopPruner() {
	s.cancelPrune()
	s.pruner.Wait()
}

// endpointStats is micro's StatsHandler: the store endpoint reports its
// queue and batch counters.
func (s *Service) endpointStats(e *micro.Endpoint) any {
	if e.Name != epStore {
		return nil
	}
	return s.storeStats()
}

func (s *Service) storeStats() StoreStats {
	return StoreStats{
		QueueLen:    s.queueLen(),
		QueueLimit:  s.cfg.QueueLimit,
		Accepted:    s.stats.accepted.Load(),
		Busy:        s.stats.busy.Load(),
		Batches:     s.stats.batches.Load(),
		MaxBatch:    s.stats.maxBatch.Load(),
		Stored:      s.stats.stored.Load(),
		Duplicates:  s.stats.duplicates.Load(),
		Failed:      s.stats.failed.Load(),
		InboxFull:   s.stats.inboxFull.Load(),
		SendRate:    s.stats.sendRate.Load(),
		StorageFull: s.stats.storageFull.Load(),
		Full:        s.storage.full(),
	}
}

// fetch answers a page of an inbox.
func (s *Service) fetch(ctx context.Context, req *api.FetchRequest) (*api.FetchResponse, error) {
	if req.UserID <= 0 {
		return nil, api.Errorf(api.CodeBadRequest, "user_id must be a positive user id")
	}
	limit := req.Limit
	switch {
	case limit < 0:
		return nil, api.Errorf(api.CodeBadRequest, "limit must not be negative")
	case limit == 0:
		limit = DefaultFetchLimit
	case limit > MaxFetchLimit:
		limit = MaxFetchLimit
	}
	// Half the payload limit leaves room for the envelope and for one more
	// body past the budget (a body is at most api.MaxBodyLen escaped).
	resp, err := s.store.Fetch(ctx, req.UserID, req.After, limit, int(s.nc.MaxPayload()/2))
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// pruneLoop prunes every PruneEvery until ctx ends.
func (s *Service) pruneLoop(ctx context.Context) {
	every(ctx, s.cfg.PruneEvery, func() { s.pruneOnce(ctx) })
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

func (s *Service) pruneOnce(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, pruneTimeout)
	defer cancel()
	entries, msgs, err := s.store.Prune(pctx, time.Now().Add(-s.cfg.Retention))
	if err != nil {
		if ctx.Err() == nil { // not stopping
			s.log.Error("prune", "err", err)
		}
		return
	}
	s.metrics.pruned.Add(float64(entries))
	if entries > 0 || msgs > 0 {
		s.log.Info("pruned", "entries", entries, "messages", msgs)
	}
}
