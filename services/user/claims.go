package user

import (
	"context"
	"time"

	"github.com/natter-chat/natter/services/user/internal/account"
)

const (
	// maxClaimBatch bounds the logins that share one transaction.
	maxClaimBatch = 128
	// claimTimeout bounds one batch's transaction.
	claimTimeout = 10 * time.Second
)

// claimBatcher runs the session claims of concurrent logins in shared
// transactions. On SQLite there is one writer and every commit is a sync to
// disk: one commit for a batch of logins instead of one each is what lets
// thousands of clients of a dead gateway resume at once. (On MySQL each
// login claims in its own transaction, concurrently.)
type claimBatcher struct {
	store *account.Store
	reqs  chan claimReq
	stop  chan struct{}
	done  chan struct{}
}

type claimReq struct {
	ctx context.Context
	c   *account.Claim
	res chan error
}

func newClaimBatcher(store *account.Store) *claimBatcher {
	b := &claimBatcher{store: store, reqs: make(chan claimReq), stop: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	return b
}

// claim runs c, in a batch with whatever other claims are waiting.
func (b *claimBatcher) claim(ctx context.Context, c *account.Claim) error {
	r := claimReq{ctx: ctx, c: c, res: make(chan error, 1)}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.stop:
		return context.Canceled
	}
	select {
	case err := <-r.res:
		return err
	case <-ctx.Done():
		// The claim may still commit: the caller treats the login as
		// failed and releases the session, as for any lost answer.
		return ctx.Err()
	}
}

// close stops the batcher once the claims it has are done.
func (b *claimBatcher) close() {
	close(b.stop)
	<-b.done
}

func (b *claimBatcher) run() {
	defer close(b.done)
	for {
		var first claimReq
		select {
		case first = <-b.reqs:
		case <-b.stop:
			return
		}
		batch := []claimReq{first}
	fill:
		for len(batch) < maxClaimBatch {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		claims := make([]*account.Claim, 0, len(batch))
		for _, r := range batch {
			if r.ctx.Err() == nil {
				claims = append(claims, r.c)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
		err := b.store.ClaimSessions(ctx, claims)
		cancel()
		for _, r := range batch {
			switch {
			case r.ctx.Err() != nil:
				r.res <- r.ctx.Err() // given up before the batch ran: not claimed
			case err != nil && len(claims) > 1:
				// One claim must not fail the others: each on its own.
				r.res <- b.store.ClaimSessions(r.ctx, []*account.Claim{r.c})
			default:
				r.res <- err
			}
		}
	}
}
