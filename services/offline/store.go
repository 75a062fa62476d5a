package offline

import (
	"context"
	"encoding/json"
	"errors"
	"hash/maphash"
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

// maxBatchEntries stops a writer from adding requests to a batch once it
// holds this many inbox entries (a few large group messages make a big
// enough transaction).
const maxBatchEntries = 20000

// maxBatchAcks stops a writer from adding ack requests to a batch once it
// holds this many acknowledgements.
const maxBatchAcks = 4 * MaxAcks

// publishAhead is how many committed batches a writer may hand to its
// publisher before it waits: the next batches commit while the last one
// is synced, pushed and answered.
const publishAhead = 8

// item is a request waiting for a writer: a store (p) or an ack request
// (acks, isAck).
type item struct {
	m     micro.Request
	p     inbox.Pending
	acks  []api.Ack
	isAck bool
	many  *storeMany // set for one message of a store of several (m is nil)
	idx   int        // its place in many
}

// storeMany collects the answers to the messages of a store of several
// (subject.OfflineStoreMany): their items may be committed by different
// writers; the last one answered sends the whole answer.
type storeMany struct {
	m       micro.Request
	results []api.StoreResult
	left    atomic.Int32
}

// answer records item i's result; the last answer sends them all.
func (s *Service) answerMany(mr *storeMany, i int, r api.StoreResult) {
	mr.results[i] = r
	if mr.left.Add(-1) == 0 {
		endpoint.Respond(s.log, mr.m, epStoreMany, api.StoreManyResponse{Results: mr.results})
	}
}

// resultOf is a store's outcome as a store of several answers it.
func resultOf(mid string, dup bool, refused []int64, err error) api.StoreResult {
	if err == nil {
		return api.StoreResult{MID: mid, Duplicate: dup, Refused: refused}
	}
	var ae *api.Error
	if errors.As(endpoint.ErrorFor(err), &ae) {
		return api.StoreResult{Code: ae.Code, Message: ae.Message}
	}
	return api.StoreResult{Code: api.CodeInternal, Message: "internal error"}
}

// writer is one batch writer: it takes requests from its queue, commits
// them in batches and hands each committed batch to its publisher, which
// pushes the new entries and answers the requests, in commit order.
type writer struct {
	queue   chan *item
	publish chan *committed
}

// committed is a batch the writer is done with.
type committed struct {
	stores []*item
	acks   []*item
	ps     []inbox.Pending
	res    []inbox.Result
	err    error // nothing stored
	ackErr error
}

// partition returns the writer of a store: one-to-one messages by
// recipient, so that each recipient's entries are written by one writer
// in the order they came; group messages by sender, so that each sender's
// group messages keep theirs. Acks go by their first user.
func (s *Service) partition(key int64) *writer {
	if len(s.writers) == 1 {
		return s.writers[0]
	}
	return s.writers[maphash.Comparable(s.seed, key)%uint64(len(s.writers))]
}

// handleStore is the store endpoint's handler. It runs on the endpoint's
// delivery goroutine, so it only decodes, checks and queues; it never
// blocks.
func (s *Service) handleStore(m micro.Request) {
	p, err := decodeStore(m.Data(), s.cfg.MaxRecipients)
	if err == nil {
		err = s.admit(p, time.Now())
	}
	if err != nil {
		endpoint.RespondError(s.log, m, epStore, err)
		return
	}
	key := p.From
	if len(p.To) == 1 {
		key = p.To[0]
	}
	if !s.enqueue(s.partition(key), &item{m: m, p: p}) {
		s.stats.busy.Add(1)
		endpoint.RespondError(s.log, m, epStore, api.ErrBusy)
		return
	}
	s.stats.accepted.Add(1)
}

// handleStoreMany is the storemany endpoint's handler: each message is
// queued as a store of its own (a message refused by its checks, or by a
// full queue, is answered in its place and does not stop the others); the
// answer goes once every message has one. Messages to one recipient go to
// one writer in the order given, so they are stored in that order.
func (s *Service) handleStoreMany(m micro.Request) {
	raws, err := api.DecodeStoreMany(m.Data())
	if err != nil {
		endpoint.RespondError(s.log, m, epStoreMany, err)
		return
	}
	mr := &storeMany{m: m, results: make([]api.StoreResult, len(raws))}
	mr.left.Store(int32(len(raws)))
	now := time.Now()
	for i, raw := range raws {
		p, err := decodeStore(raw, s.cfg.MaxRecipients)
		if err == nil {
			err = s.admit(p, now)
		}
		if err != nil {
			s.answerMany(mr, i, resultOf("", false, nil, err))
			continue
		}
		key := p.From
		if len(p.To) == 1 {
			key = p.To[0]
		}
		if !s.enqueue(s.partition(key), &item{p: p, many: mr, idx: i}) {
			s.stats.busy.Add(1)
			s.answerMany(mr, i, resultOf("", false, nil, api.ErrBusy))
			continue
		}
		s.stats.accepted.Add(1)
	}
}

// admit checks a decoded store against the storage and its sender's byte
// rate, before it is queued. Messages to oneself are stored like any other
// (notes to self; the inbox limits bound them).
func (s *Service) admit(p inbox.Pending, now time.Time) error {
	if s.storage.full() {
		s.stats.storageFull.Add(1)
		return api.ErrStorageFull
	}
	if !s.rates.allow(p.From, len(p.Body), now) {
		s.stats.sendRate.Add(1)
		return api.ErrSendRate
	}
	return nil
}

// storeError is what a store that failed with err is answered, counted
// once in its outcome: a full storage (which also stops stores for a
// while) or a failure.
func (s *Service) storeError(err error, n int) error {
	if sqldb.IsFull(err) {
		s.storage.sawFull()
		s.stats.storageFull.Add(int64(n))
		return api.ErrStorageFull
	}
	s.stats.failed.Add(int64(n))
	return err
}

// handleAck is the ack endpoint's handler: acknowledgements are committed
// with the next store batch (on SQLite in the same transaction).
func (s *Service) handleAck(m micro.Request) {
	var req api.AckRequest
	if err := json.Unmarshal(m.Data(), &req); err != nil {
		endpoint.RespondError(s.log, m, epAck, api.Errorf(api.CodeBadRequest, "malformed request: %v", err))
		return
	}
	if err := checkAcks(req.Acks); err != nil {
		endpoint.RespondError(s.log, m, epAck, err)
		return
	}
	if len(req.Acks) == 0 {
		endpoint.Respond(s.log, m, epAck, api.Empty{})
		return
	}
	if !s.enqueue(s.partition(req.Acks[0].UserID), &item{m: m, acks: req.Acks, isAck: true}) {
		endpoint.RespondError(s.log, m, epAck, api.ErrBusy)
	}
}

// checkAcks checks an ack request's acknowledgements.
func checkAcks(acks []api.Ack) error {
	if len(acks) > MaxAcks {
		return api.Errorf(api.CodeBadRequest, "at most %d acks per request", MaxAcks)
	}
	for _, a := range acks {
		if a.UserID <= 0 {
			return api.Errorf(api.CodeBadRequest, "user_id must be a positive user id")
		}
		if a.Seq < 0 {
			return api.Errorf(api.CodeBadRequest, "seq must not be negative")
		}
	}
	return nil
}

// enqueue queues it for w; false when the queue is full or closed.
func (s *Service) enqueue(w *writer, it *item) bool {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closed {
		return false
	}
	select {
	case w.queue <- it:
		return true
	default:
		return false
	}
}

// queueLen is the number of requests waiting for a writer.
func (s *Service) queueLen() int {
	n := 0
	for _, w := range s.writers {
		n += len(w.queue)
	}
	return n
}

// decodeStore parses and checks a store request (api.DecodeStoreRequest:
// the body comes back compact, as json.Compact writes it, so that what is
// stored is byte for byte what fetches and pushes carry).
func decodeStore(data []byte, maxRecipients int) (inbox.Pending, error) {
	req, err := api.DecodeStoreRequest(data)
	if err != nil {
		return inbox.Pending{}, err
	}
	if req.From <= 0 {
		return inbox.Pending{}, api.Errorf(api.CodeBadRequest, "from must be a positive user id")
	}
	if len(req.To) == 0 || len(req.To) > maxRecipients {
		return inbox.Pending{}, api.Errorf(api.CodeBadRequest, "to must list 1 to %d recipients, got %d", maxRecipients, len(req.To))
	}
	to := req.To
	if len(to) > 1 {
		to = make([]int64, 0, len(req.To))
		seen := make(map[int64]struct{}, len(req.To))
		for _, u := range req.To {
			if _, dup := seen[u]; dup {
				continue
			}
			seen[u] = struct{}{}
			to = append(to, u)
		}
	}
	for _, u := range to {
		if u <= 0 {
			return inbox.Pending{}, api.Errorf(api.CodeBadRequest, "recipients must be positive user ids")
		}
	}
	return inbox.Pending{From: req.From, To: to, CID: req.CID, Body: req.Body}, nil
}

// writeLoop stores queued requests in batches until the queue is closed
// and empty, then closes the publisher's channel. A batch is whatever is
// queued when the writer comes for it, up to BatchSize stores: no waiting
// for a batch to fill.
func (s *Service) writeLoop(w *writer) {
	defer close(w.publish)
	var prev uint64 // the commit before the last one (SQLite)
	for {
		it, ok := <-w.queue
		if !ok {
			return
		}
		c := &committed{}
		entries, acks := 0, 0
		add := func(it *item) {
			if it.isAck {
				c.acks = append(c.acks, it)
				acks += len(it.acks)
				return
			}
			c.stores = append(c.stores, it)
			entries += len(it.p.To)
		}
		add(it)
		open := fill(w.queue, add, func() bool {
			return len(c.stores) < s.cfg.BatchSize && entries < maxBatchEntries && acks < maxBatchAcks
		})
		if open && len(c.stores) == 0 {
			// Acknowledgements alone: give a store ackFoldWait to come
			// and take them along (one commit, one fsync, instead of
			// two); the gateway batches acks every 20 ms anyway.
			t := time.NewTimer(ackFoldWait)
			select {
			case it, ok := <-w.queue:
				if ok {
					add(it)
					fill(w.queue, add, func() bool {
						return len(c.stores) < s.cfg.BatchSize && entries < maxBatchEntries && acks < maxBatchAcks
					})
				}
			case <-t.C:
			}
			t.Stop()
		}
		s.write(c)
		if len(c.stores) > 0 {
			s.storage.check()
		}
		w.publish <- c
		// SQLite: the batch committed without waiting for the disk; its
		// publisher syncs it. The writer goes on once the commit before
		// it is synced: the next batch is built during the sync, and
		// grows with what arrives meanwhile rather than being cut into
		// many small commits, each with its fixed cost.
		s.store.WaitSynced(prev)
		prev = s.store.Commits()
	}
}

// ackFoldWait is how long a batch of acknowledgements alone waits for a
// store to share its transaction.
const ackFoldWait = 2 * time.Millisecond

// fill adds what is queued now to a batch while room says there is room,
// without waiting; it reports false when the queue is closed.
func fill(queue chan *item, add func(*item), room func() bool) bool {
	for room() {
		select {
		case it, ok := <-queue:
			if !ok {
				return false
			}
			add(it)
		default:
			return true
		}
	}
	return true
}

// write commits a batch.
func (s *Service) write(c *committed) {
	start := time.Now()
	defer func() { s.metrics.writerBusy.Add(time.Since(start).Seconds()) }()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	var b inbox.Batch
	if len(c.stores) > 0 {
		c.ps = make([]inbox.Pending, len(c.stores))
		for i, it := range c.stores {
			c.ps[i] = it.p
		}
		b.Stores = c.ps
		s.stats.batches.Add(1)
		s.metrics.batchSize.Observe(float64(len(c.stores)))
		for n := int64(len(c.stores)); ; {
			cur := s.stats.maxBatch.Load()
			if n <= cur || s.stats.maxBatch.CompareAndSwap(cur, n) {
				break
			}
		}
	}
	for _, it := range c.acks {
		b.Acks = append(b.Acks, it.acks...)
	}
	c.res, c.ackErr, c.err = s.store.Write(ctx, b)
}

// publishLoop pushes and answers the writer's committed batches in order
// until the writer closes its channel.
func (s *Service) publishLoop(w *writer) {
	p := publisher{hdr: nats.Header{subject.KindHeader: []string{subject.KindMsg}}}
	for c := range w.publish {
		s.publishBatch(&p, c)
	}
}

// publisher is a publish loop's reusable state.
type publisher struct {
	hdr  nats.Header
	push []byte
	resp []byte
}

// publishBatch makes a committed batch durable (one sync of the WAL
// covers every batch committed before it: on SQLite the writer commits
// without waiting for the disk and goes on with the next batch), then
// publishes its new inbox entries and answers its requests.
func (s *Service) publishBatch(p *publisher, c *committed) {
	if err := s.store.Sync(); err != nil {
		// Whether the batch survives a crash is unknown: nobody hears
		// it was stored (senders retry with their cid).
		s.log.Error("sync store batch", "requests", len(c.stores)+len(c.acks), "err", err)
		if c.err == nil {
			c.err = err
		}
		if c.ackErr == nil {
			c.ackErr = err
		}
		c.res = nil
	}
	for _, it := range c.acks {
		if c.ackErr != nil {
			endpoint.RespondError(s.log, it.m, epAck, c.ackErr)
			continue
		}
		s.metrics.ackRequests.Inc()
		s.metrics.acks.Add(float64(len(it.acks)))
		endpoint.Respond(s.log, it.m, epAck, api.Empty{})
	}
	if len(c.stores) == 0 {
		return
	}
	if c.err != nil {
		// Nothing was stored; senders retry with their cid.
		s.log.Error("store batch", "requests", len(c.stores), "err", c.err)
		err := s.storeError(c.err, len(c.stores))
		for _, it := range c.stores {
			if it.many != nil {
				s.answerMany(it.many, it.idx, resultOf("", false, nil, err))
				continue
			}
			endpoint.RespondError(s.log, it.m, epStore, endpoint.ErrorFor(err))
		}
		return
	}

	// Committed: push every new entry to its recipient, in seq order.
	var entries, pushed, failed int
	for i, r := range c.res {
		if r.Err != nil || r.Duplicate {
			continue
		}
		m := c.ps[i]
		entries += len(r.To)
		for j, to := range r.To {
			p.push = api.AppendPush(p.push[:0], r.Seqs[j], r.MID, m.From, m.Body)
			msg := &nats.Msg{Subject: subject.User(to), Header: p.hdr, Data: p.push}
			if err := s.nc.PublishMsg(msg); err != nil {
				// The entry is stored; the recipient gets it with its next fetch.
				failed++
				s.log.Warn("push inbox entry", "user_id", to, "seq", r.Seqs[j], "mid", r.MID, "err", err)
				continue
			}
			pushed++
		}
	}
	s.metrics.entries.Add(float64(entries))
	s.metrics.pushed.Add(float64(pushed))
	s.metrics.pushErrors.Add(float64(failed))

	for i, r := range c.res {
		it := c.stores[i]
		m := it.m
		switch {
		case errors.Is(r.Err, api.ErrInboxFull):
			s.stats.inboxFull.Add(1)
		case r.Err != nil:
			s.log.Error("store message", "from", c.ps[i].From, "recipients", len(c.ps[i].To), "err", r.Err)
			r.Err = s.storeError(r.Err, 1)
		case r.Duplicate:
			s.stats.duplicates.Add(1)
		default:
			s.stats.stored.Add(1)
		}
		if r.Err != nil {
			if it.many != nil {
				s.answerMany(it.many, it.idx, resultOf("", false, nil, r.Err))
				continue
			}
			endpoint.RespondError(s.log, m, epStore, endpoint.ErrorFor(r.Err))
			continue
		}
		if it.many != nil {
			s.answerMany(it.many, it.idx, resultOf(r.MID, r.Duplicate, r.Refused, nil))
			continue
		}
		if len(r.Refused) > 0 {
			endpoint.Respond(s.log, m, epStore, api.StoreResponse{MID: r.MID, Refused: r.Refused})
			continue
		}
		p.resp = api.AppendStoreResponse(p.resp[:0], r.MID, r.Duplicate)
		if err := m.Respond(p.resp); err != nil {
			s.log.Warn("respond", "endpoint", epStore, "err", err)
		}
	}
}
