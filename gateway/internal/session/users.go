package session

import "sync"

// userCache remembers which user ids exist (a chat's recipient is looked up
// once: chat.go). Accounts are never deleted, so a positive answer stays
// true; a negative one is asked again next time.
type userCache struct {
	max int

	mu    sync.RWMutex
	known map[int64]struct{}
}

func newUserCache(max int) *userCache {
	return &userCache{max: max, known: map[int64]struct{}{}}
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
