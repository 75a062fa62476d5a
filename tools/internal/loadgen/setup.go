package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// setupRequestTimeout bounds one register or login during setup (bcrypt is
// slow, and a whole storm of them queues up in the user service).
const setupRequestTimeout = 60 * time.Second

// simUser is a simulated user, logged in on its own connection.
type simUser struct {
	id   int64
	name string
	conn *conn
}

// userSpec says how to create one simulated user.
type userSpec struct {
	name string
	addr string
	h    handlers // installed before login, so replayed pushes are seen
}

// newRunID returns a short random id that makes this run's user names
// unique.
func newRunID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// addrFor spreads connections over the gateways round-robin.
func addrFor(addrs []string, k int) string { return addrs[k%len(addrs)] }

// connectUsers dials, registers and logs in one user per spec, at most
// concurrency at a time. On error every connection opened is closed.
func connectUsers(ctx context.Context, d *dialer, specs []userSpec, password string, concurrency int) ([]*simUser, error) {
	users := make([]*simUser, len(specs))
	err := parallel(ctx, len(specs), concurrency, func(ctx context.Context, i int) error {
		u, err := connectUser(ctx, d, specs[i], password)
		users[i] = u
		return err
	})
	if err != nil {
		closeUsers(users)
		return nil, err
	}
	return users, nil
}

// parallel runs fn for 0..n-1, at most par at a time, and returns the first
// error; after an error the ctx given to fn is cancelled and no new call
// starts.
func parallel(ctx context.Context, n, par int, fn func(ctx context.Context, i int) error) error {
	return parallelWith(ctx, n, par, func() struct{} { return struct{}{} },
		func(ctx context.Context, _ struct{}, i int) error { return fn(ctx, i) })
}

// parallelWith is parallel with a state per worker goroutine (its buffers),
// made by newState and handed to each of its calls of fn.
func parallelWith[S any](ctx context.Context, n, par int, newState func() S,
	fn func(ctx context.Context, s S, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(par, n) {
		wg.Go(func() {
			s := newState()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, s, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

func connectUser(ctx context.Context, d *dialer, s userSpec, password string) (*simUser, error) {
	c, err := dial(ctx, d, s.addr, s.h)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, setupRequestTimeout)
	defer cancel()
	id, err := c.register(rctx, s.name, password)
	if err == nil {
		var ack *frame
		if ack, err = c.login(rctx, id, password); err == nil && ack.Pending != 0 {
			err = fmt.Errorf("login %s: %d messages pending for a fresh user", s.name, ack.Pending)
		}
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("%s: %w", s.addr, err)
	}
	return &simUser{id: id, name: s.name, conn: c}, nil
}

// closeUsers closes the connections of users (nil entries are skipped), all
// at once.
func closeUsers(users []*simUser) {
	var wg sync.WaitGroup
	for _, u := range users {
		if u != nil {
			wg.Go(u.conn.close)
		}
	}
	wg.Wait()
}
