package session

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/subject"
)

// userCache remembers which user ids exist. Accounts are never deleted, so a
// positive answer stays true; a negative one is asked again next time.
type userCache struct {
	nc  *nats.Conn
	m   *Metrics
	max int

	mu    sync.RWMutex
	known map[int64]struct{}
}

func newUserCache(nc *nats.Conn, m *Metrics, max int) *userCache {
	return &userCache{nc: nc, m: m, max: max, known: map[int64]struct{}{}}
}

func (c *userCache) exists(ctx context.Context, uid int64) (bool, error) {
	c.mu.RLock()
	_, ok := c.known[uid]
	c.mu.RUnlock()
	if ok {
		return true, nil
	}
	var resp api.LookupResponse
	if err := c.m.Call(ctx, c.nc, subject.UserLookup, api.LookupRequest{IDs: []int64{uid}}, &resp); err != nil {
		return false, err
	}
	for _, u := range resp.Users {
		if u.ID == uid {
			c.remember(uid)
			return true, nil
		}
	}
	return false, nil
}

func (c *userCache) remember(uid int64) {
	c.mu.Lock()
	if len(c.known) >= c.max {
		c.known = map[int64]struct{}{}
	}
	c.known[uid] = struct{}{}
	c.mu.Unlock()
}
