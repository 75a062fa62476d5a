package session

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/subject"
)

// acker collects delivery acknowledgements and sends them to the offline
// service in batches: the latest seq per user, every interval. Acks are
// cumulative, so only the highest per user matters.
type acker struct {
	c        *caller
	m        *Metrics
	log      *slog.Logger
	timeout  time.Duration
	interval time.Duration

	mu     sync.Mutex
	latest map[int64]int64
	// sending is held while acks are on their way, so flushUser waits for
	// a flush that took the user's ack before reporting it handed over.
	sending sync.Mutex
}

const ackChunk = 1000

func newAcker(c *caller, m *Metrics, log *slog.Logger, interval, timeout time.Duration) *acker {
	return &acker{c: c, m: m, log: log, interval: interval, timeout: timeout, latest: map[int64]int64{}}
}

func (a *acker) ack(uid, seq int64) {
	a.mu.Lock()
	if seq > a.latest[uid] {
		a.latest[uid] = seq
	}
	a.mu.Unlock()
}

// flushUsers sends these users' pending acks now (sessions ending hand
// their acks over before the users can log in elsewhere).
func (a *acker) flushUsers(ctx context.Context, uids []int64) error {
	a.sending.Lock()
	defer a.sending.Unlock()
	a.mu.Lock()
	var acks []api.Ack
	for _, uid := range uids {
		if seq, ok := a.latest[uid]; ok {
			acks = append(acks, api.Ack{UserID: uid, Seq: seq})
			delete(a.latest, uid)
		}
	}
	a.mu.Unlock()
	for len(acks) > 0 {
		n := min(len(acks), ackChunk)
		if err := a.send(ctx, acks[:n]); err != nil {
			for _, k := range acks[n:] {
				a.ack(k.UserID, k.Seq)
			}
			return err
		}
		acks = acks[n:]
	}
	return nil
}

// flush sends every pending ack.
func (a *acker) flush(ctx context.Context) error {
	a.sending.Lock()
	defer a.sending.Unlock()
	a.mu.Lock()
	if len(a.latest) == 0 {
		a.mu.Unlock()
		return nil
	}
	acks := make([]api.Ack, 0, len(a.latest))
	for uid, seq := range a.latest {
		acks = append(acks, api.Ack{UserID: uid, Seq: seq})
	}
	a.latest = map[int64]int64{}
	a.mu.Unlock()
	var firstErr error
	for len(acks) > 0 {
		n := min(len(acks), ackChunk)
		if err := a.send(ctx, acks[:n]); err != nil && firstErr == nil {
			firstErr = err
		}
		acks = acks[n:]
	}
	return firstErr
}

// send delivers acks; on failure they go back into the pending set to be
// retried with the next flush.
func (a *acker) send(ctx context.Context, acks []api.Ack) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	err := a.c.call(ctx, subject.OfflineAck, api.AckRequest{Acks: acks}, nil, true)
	if err != nil {
		for _, k := range acks {
			a.ack(k.UserID, k.Seq)
		}
		return err
	}
	a.m.acks.Add(float64(len(acks)))
	return nil
}

func (a *acker) run(stop <-chan struct{}) {
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := a.flush(context.Background()); err != nil {
				a.log.Warn("ack flush failed; will retry", "err", err)
			}
		}
	}
}
