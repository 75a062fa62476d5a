package session

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/backoff"
	"github.com/natter-chat/natter/shared/subject"
)

// logouts releases ended sessions in the user service in batches, the way
// acks are sent: thousands of clients disconnecting at once cost a few
// requests, not thousands. A batch that fails stays queued and is retried
// with the next one, so a session never outlives its connection for longer
// than the user service is unreachable. Each batch first hands over its
// users' acks, so a login elsewhere starts after what they acknowledged.
type logouts struct {
	c        *caller
	m        *Metrics
	log      *slog.Logger
	acks     *acker
	timeout  time.Duration
	interval time.Duration

	mu      sync.Mutex
	pending []pendingLogout
	wake    chan struct{}
}

type pendingLogout struct {
	ref  api.SessionRef
	done chan struct{} // closed once released; nil when nobody waits
}

func newLogouts(c *caller, m *Metrics, log *slog.Logger, acks *acker, interval, timeout time.Duration) *logouts {
	return &logouts{c: c, m: m, log: log, acks: acks, interval: interval, timeout: timeout, wake: make(chan struct{}, 1)}
}

// add queues the release of uid's session sid; revoke (an explicit logout)
// also revokes its resume token. The returned channel is closed once it is
// done.
func (l *logouts) add(uid int64, sid string, revoke bool) <-chan struct{} {
	done := make(chan struct{})
	l.mu.Lock()
	l.pending = append(l.pending, pendingLogout{api.SessionRef{UserID: uid, SessionID: sid, Revoke: revoke}, done})
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return done
}

// run sends batches until stop is closed.
func (l *logouts) run(stop <-chan struct{}) {
	t := time.NewTicker(l.interval)
	defer t.Stop()
	pauses := backoff.New(l.interval*10, 5*time.Second)
	for {
		select {
		case <-stop:
			return
		case <-l.wake:
		case <-t.C:
		}
		if err := l.flush(context.Background()); err != nil {
			l.log.Warn("releasing sessions failed; will retry", "err", err)
			select { // back off before the next try
			case <-stop:
				return
			case <-time.After(pauses.Next()):
			}
			continue
		}
		pauses.Reset()
	}
}

// flush sends everything queued, a batch at a time; what fails stays queued.
func (l *logouts) flush(ctx context.Context) error {
	l.mu.Lock()
	batch := l.pending
	l.pending = nil
	l.mu.Unlock()
	for len(batch) > 0 {
		n := min(len(batch), api.MaxLogouts)
		if err := l.send(ctx, batch[:n]); err != nil {
			l.mu.Lock()
			l.pending = append(batch, l.pending...)
			l.mu.Unlock()
			return err
		}
		for _, p := range batch[:n] {
			close(p.done)
		}
		batch = batch[n:]
	}
	return nil
}

func (l *logouts) send(ctx context.Context, batch []pendingLogout) error {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	refs := make([]api.SessionRef, len(batch))
	uids := make([]int64, len(batch))
	for i, p := range batch {
		refs[i], uids[i] = p.ref, p.ref.UserID
	}
	if err := l.acks.flushUsers(ctx, uids); err != nil {
		return err
	}
	return l.c.call(ctx, subject.UserLogouts, api.LogoutsRequest{Sessions: refs}, nil, true)
}
