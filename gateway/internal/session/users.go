package session

import (
	"context"
	"sync"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/subject"
)

// userCache remembers which user ids exist. Accounts are never deleted, so a
// positive answer stays true; a negative one is asked again next time.
type userCache struct {
	c   *caller
	max int

	mu    sync.RWMutex
	known map[int64]struct{}
}

func newUserCache(c *caller, max int) *userCache {
	return &userCache{c: c, max: max, known: map[int64]struct{}{}}
}

func (c *userCache) exists(ctx context.Context, uid int64) (bool, error) {
	c.mu.RLock()
	_, ok := c.known[uid]
	c.mu.RUnlock()
	if ok {
		return true, nil
	}
	var resp api.LookupResponse
	if err := c.c.call(ctx, subject.UserLookup, api.LookupRequest{IDs: []int64{uid}}, &resp, true); err != nil {
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

// isKnown reports whether uid is known to exist, without asking.
func (c *userCache) isKnown(uid int64) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.known[uid]
	return ok
}
