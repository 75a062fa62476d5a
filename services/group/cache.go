package group

import (
	"container/list"
	"slices"
	"sync"
	"sync/atomic"
)

// memberSet is a group's member ids as read at one membership version. It is
// never modified once made, so it is shared without locks.
type memberSet struct {
	// version is the group's version read before the ids were: the ids
	// reflect that version or a later one.
	version int64
	ids     []int64 // ascending
}

// has reports whether uid is a member.
func (m *memberSet) has(uid int64) bool {
	_, ok := slices.BinarySearch(m.ids, uid)
	return ok
}

// others returns the members other than uid, in a new slice.
func (m *memberSet) others(uid int64) []int64 {
	out := make([]int64, 0, len(m.ids))
	for _, id := range m.ids {
		if id != uid {
			out = append(out, id)
		}
	}
	return out
}

// memberCache keeps the member sets of the most recently used groups, at
// most max of them. A set is only answered for the version it was tagged
// with, so a caller that has just read a group's current version never gets
// a set older than that version.
//
// Why that is never stale: every membership change increments the version in
// its own transaction, and a set is tagged with the version read *before*
// its ids. If a sender reads version v after a change was acknowledged, v
// counts that change; a set tagged v was read after version v was current,
// and as long as the version is still v the membership is exactly what it
// was then.
type memberCache struct {
	max int

	mu      sync.Mutex
	lru     *list.List // of *cacheEntry, most recently used first
	byGroup map[int64]*list.Element

	hits    atomic.Int64
	reloads atomic.Int64
}

type cacheEntry struct {
	group int64
	set   *memberSet
}

func newMemberCache(max int) *memberCache {
	return &memberCache{max: max, lru: list.New(), byGroup: make(map[int64]*list.Element)}
}

// get returns group's member set if it is cached at exactly version.
func (c *memberCache) get(group, version int64) (*memberSet, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byGroup[group]
	if !ok {
		return nil, false
	}
	ent := e.Value.(*cacheEntry)
	if ent.set.version != version {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return ent.set, true
}

// put caches set for group unless a set of a later version is cached
// already (concurrent reloads may finish in any order), and evicts the
// least recently used groups beyond max.
func (c *memberCache) put(group int64, set *memberSet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byGroup[group]; ok {
		ent := e.Value.(*cacheEntry)
		if ent.set.version < set.version {
			ent.set = set
		}
		c.lru.MoveToFront(e)
		return
	}
	c.byGroup[group] = c.lru.PushFront(&cacheEntry{group: group, set: set})
	for c.lru.Len() > c.max {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.byGroup, oldest.Value.(*cacheEntry).group)
	}
}

// len returns the number of groups cached.
func (c *memberCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
