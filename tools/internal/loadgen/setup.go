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

// simUser is a simulated user, logged in on its own connection; in
// reconnect mode on a new one whenever it is lost (its keeper goroutine
// replaces it, see reconnect.go).
type simUser struct {
	id       int64
	name     string
	password string
	spec     userSpec
	c        atomic.Pointer[conn] // the current connection, or the last one while the session is down

	// Reconnect mode, owned by the user's keeper goroutine (and the setup
	// before it).
	addr  int    // index in Config.Addrs of the current connection
	token string // the resume token of the last login
	inbox *inbox // the user's receiving side, for lastseq; nil: it receives nothing

	mu      sync.Mutex
	down    bool          // reconnect mode: the session is lost and not back yet
	changed chan struct{} // closed and replaced when the session comes back
}

// conn is the user's current connection.
func (u *simUser) conn() *conn { return u.c.Load() }

// live returns the connection carrying the user's session, or nil while
// it is down.
func (u *simUser) live() *conn {
	u.mu.Lock()
	down := u.down
	u.mu.Unlock()
	if c := u.conn(); !down && c.Err() == nil {
		return c
	}
	return nil
}

// waitLive waits until the user's session is up, until deadline at most,
// and returns its connection (nil: ctx ended or the deadline passed).
func (u *simUser) waitLive(ctx context.Context, deadline time.Time) *conn {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		u.mu.Lock()
		down, changed := u.down, u.changed
		u.mu.Unlock()
		if c := u.conn(); !down && c.Err() == nil {
			return c
		}
		if !down {
			// The connection broke and the keeper has not seen it yet:
			// poll until it has (it marks the session down at once).
			changed = nil
		}
		select {
		case <-changed:
		case <-time.After(drainPollEvery):
		case <-t.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// setDown marks the session lost (down) or back on u.conn() (up).
func (u *simUser) setDown(down bool) {
	u.mu.Lock()
	u.down = down
	if !down {
		close(u.changed)
		u.changed = make(chan struct{})
	}
	u.mu.Unlock()
}

// userSpec says how to create one simulated user.
type userSpec struct {
	name string
	addr int      // index in the run's addresses
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
func connectUsers(ctx context.Context, d *dialer, addrs []string, specs []userSpec, password string,
	concurrency int) ([]*simUser, error) {
	users := make([]*simUser, len(specs))
	err := parallel(ctx, len(specs), concurrency, func(ctx context.Context, i int) error {
		u, err := connectUser(ctx, d, addrs, specs[i], password)
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

func connectUser(ctx context.Context, d *dialer, addrs []string, s userSpec, password string) (*simUser, error) {
	s.addr %= len(addrs)
	addr := addrs[s.addr]
	c, err := dial(ctx, d, addr, s.h)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, setupRequestTimeout)
	defer cancel()
	id, err := c.register(rctx, s.name, password)
	var ack *frame
	if err == nil {
		if ack, err = c.login(rctx, id, password, "", 0); err == nil && ack.Pending != 0 {
			err = fmt.Errorf("login %s: %d messages pending for a fresh user", s.name, ack.Pending)
		}
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	u := &simUser{id: id, name: s.name, password: password, spec: s, addr: s.addr, token: ack.Token,
		changed: make(chan struct{})}
	u.c.Store(c)
	return u, nil
}

// closeUsers closes the connections of users (nil entries are skipped), all
// at once.
func closeUsers(users []*simUser) {
	var wg sync.WaitGroup
	for _, u := range users {
		if u != nil {
			wg.Go(u.conn().close)
		}
	}
	wg.Wait()
}
