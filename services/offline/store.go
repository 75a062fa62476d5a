package offline

import (
	"bytes"
	"context"
	"encoding/json"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natter-chat/natter/services/offline/internal/inbox"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/subject"
)

// maxBatchEntries stops a writer from adding requests to a batch once it
// holds this many inbox entries (a few large group messages make a big
// enough transaction).
const maxBatchEntries = 20000

// storeReq is a validated store request waiting for a writer.
type storeReq struct {
	m micro.Request
	p inbox.Pending
}

// handleStore is the store endpoint's handler. It runs on the endpoint's
// delivery goroutine, so it only validates and queues; it never blocks.
func (s *Service) handleStore(m micro.Request) {
	p, err := decodeStore(m.Data(), s.cfg.MaxRecipients)
	if err != nil {
		endpoint.RespondError(s.log, m, epStore, err)
		return
	}
	s.gate.RLock()
	queued := false
	if !s.closed {
		select {
		case s.queue <- &storeReq{m: m, p: p}:
			queued = true
		default:
		}
	}
	s.gate.RUnlock()
	if !queued {
		s.stats.busy.Add(1)
		s.metrics.storeBusy.Inc()
		endpoint.RespondError(s.log, m, epStore, api.ErrBusy)
		return
	}
	s.stats.accepted.Add(1)
}

// decodeStore parses and checks a store request. The body is returned in
// canonical form, compact as json.Compact writes it (no escaping added), so
// that what is stored is byte for byte what fetches and pushes carry.
func decodeStore(data []byte, maxRecipients int) (inbox.Pending, error) {
	var req api.StoreRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return inbox.Pending{}, api.Errorf(api.CodeBadRequest, "malformed store request: %v", err)
	}
	if req.From <= 0 {
		return inbox.Pending{}, api.Errorf(api.CodeBadRequest, "from must be a positive user id")
	}
	if len(req.To) == 0 || len(req.To) > maxRecipients {
		return inbox.Pending{}, api.Errorf(api.CodeBadRequest, "to must list 1 to %d recipients, got %d", maxRecipients, len(req.To))
	}
	to := make([]int64, 0, len(req.To))
	seen := make(map[int64]struct{}, len(req.To))
	for _, u := range req.To {
		if u <= 0 {
			return inbox.Pending{}, api.Errorf(api.CodeBadRequest, "recipients must be positive user ids")
		}
		if _, dup := seen[u]; dup {
			continue
		}
		seen[u] = struct{}{}
		to = append(to, u)
	}
	if len(req.CID) > api.MaxCIDLen {
		return inbox.Pending{}, api.Errorf(api.CodeBadRequest, "cid longer than %d bytes", api.MaxCIDLen)
	}
	if len(req.Body) > api.MaxBodyLen {
		return inbox.Pending{}, api.Errorf(api.CodeBadRequest, "body longer than %d bytes", api.MaxBodyLen)
	}
	if b := bytes.TrimLeft(req.Body, " \t\r\n"); len(b) == 0 || b[0] != '{' {
		return inbox.Pending{}, api.Errorf(api.CodeBadRequest, "body must be a JSON object")
	}
	if !utf8.Valid(req.Body) {
		return inbox.Pending{}, api.Errorf(api.CodeBadRequest, "body is not valid UTF-8")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, req.Body); err != nil {
		return inbox.Pending{}, api.Errorf(api.CodeBadRequest, "body is not valid JSON")
	}
	body := compact.Bytes()
	return inbox.Pending{From: req.From, To: to, CID: req.CID, Body: body}, nil
}

// writeLoop stores queued requests in batches until the queue is closed
// and empty. A batch is whatever is queued when the writer comes for it, up
// to BatchSize: no waiting for a batch to fill.
func (s *Service) writeLoop() {
	batch := make([]*storeReq, 0, s.cfg.BatchSize)
	for {
		r, ok := <-s.queue
		if !ok {
			return
		}
		batch = append(batch[:0], r)
		entries := len(r.p.To)
	fill:
		for len(batch) < s.cfg.BatchSize && entries < maxBatchEntries {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break fill
				}
				batch = append(batch, r)
				entries += len(r.p.To)
			default:
				break fill
			}
		}
		s.writeBatch(batch)
		clear(batch)
	}
}

// writeBatch stores a batch, publishes the new inbox entries and answers
// the requests.
func (s *Service) writeBatch(batch []*storeReq) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	ps := make([]inbox.Pending, len(batch))
	for i, r := range batch {
		ps[i] = r.p
	}
	s.stats.batches.Add(1)
	s.metrics.batchSize.Observe(float64(len(batch)))
	for n := int64(len(batch)); ; {
		cur := s.stats.maxBatch.Load()
		if n <= cur || s.stats.maxBatch.CompareAndSwap(cur, n) {
			break
		}
	}
	res, err := s.store.StoreBatch(ctx, ps)
	if err != nil {
		// Nothing was stored; senders retry with their cid.
		s.log.Error("store batch", "requests", len(batch), "err", err)
		s.stats.failed.Add(int64(len(batch)))
		s.metrics.storeFailures.Add(float64(len(batch)))
		for _, r := range batch {
			endpoint.RespondError(s.log, r.m, epStore, endpoint.ErrorFor(err))
		}
		return
	}

	// Committed: push every new entry to its recipient, in seq order.
	hdr := nats.Header{subject.KindHeader: []string{subject.KindMsg}}
	var (
		buf                     []byte
		entries, pushed, failed int
	)
	for i, r := range res {
		if r.Err != nil || r.Duplicate {
			continue
		}
		p := ps[i]
		entries += len(p.To)
		for j, to := range p.To {
			buf = api.AppendPush(buf[:0], r.Seqs[j], r.MID, p.From, p.Body)
			msg := &nats.Msg{Subject: subject.User(to), Header: hdr, Data: buf}
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

	for i, r := range res {
		m := batch[i].m
		switch {
		case r.Err != nil:
			s.stats.failed.Add(1)
			s.metrics.storeFailures.Inc()
			s.log.Error("store message", "from", ps[i].From, "recipients", len(ps[i].To), "err", r.Err)
			endpoint.RespondError(s.log, m, epStore, endpoint.ErrorFor(r.Err))
		case r.Duplicate:
			s.stats.duplicates.Add(1)
			s.metrics.duplicates.Inc()
			endpoint.Respond(s.log, m, epStore, api.StoreResponse{MID: r.MID, Duplicate: true})
		default:
			s.stats.stored.Add(1)
			s.metrics.stored.Inc()
			endpoint.Respond(s.log, m, epStore, api.StoreResponse{MID: r.MID})
		}
	}
}
