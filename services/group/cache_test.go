package group

import (
	"slices"
	"sync"
	"testing"
)

func TestMemberCache(t *testing.T) {
	c := newMemberCache(2)
	set := func(v int64, ids ...int64) *memberSet { return &memberSet{version: v, ids: ids} }

	c.put(1, set(3, 1, 2))
	if _, ok := c.get(1, 4); ok {
		t.Error("a set answered for another version")
	}
	if s, ok := c.get(1, 3); !ok || !slices.Equal(s.ids, []int64{1, 2}) {
		t.Errorf("get: %v, %v", s, ok)
	}
	// An older set finishing its reload late does not replace a newer one.
	c.put(1, set(5, 1))
	c.put(1, set(4, 1, 2, 3))
	if _, ok := c.get(1, 5); !ok {
		t.Error("the newer set was replaced by an older one")
	}
	// Least recently used groups go first.
	c.put(2, set(1, 7))
	c.get(1, 5)
	c.put(3, set(1, 8))
	if _, ok := c.get(2, 1); ok {
		t.Error("the least recently used group was kept")
	}
	if _, ok := c.get(1, 5); !ok {
		t.Error("a recently used group was evicted")
	}
	if c.len() != 2 {
		t.Errorf("%d groups cached, bound 2", c.len())
	}
}

func TestMemberSet(t *testing.T) {
	s := &memberSet{ids: []int64{2, 5, 9}}
	for _, tc := range []struct {
		uid    int64
		has    bool
		others []int64
	}{
		{5, true, []int64{2, 9}},
		{2, true, []int64{5, 9}},
		{7, false, []int64{2, 5, 9}},
	} {
		if s.has(tc.uid) != tc.has || !slices.Equal(s.others(tc.uid), tc.others) {
			t.Errorf("uid %d: has %v, others %v", tc.uid, s.has(tc.uid), s.others(tc.uid))
		}
	}
}

// TestMemberCacheConcurrent runs readers and writers at once (under -race).
func TestMemberCacheConcurrent(t *testing.T) {
	c := newMemberCache(8)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				g := int64((w + i) % 16)
				v := int64(i)
				if s, ok := c.get(g, v); ok && s.version != v {
					t.Errorf("group %d: asked version %d, got %d", g, v, s.version)
					return
				}
				c.put(g, &memberSet{version: v, ids: []int64{int64(w)}})
			}
		})
	}
	wg.Wait()
	if c.len() > 8 {
		t.Errorf("%d groups cached, bound 8", c.len())
	}
}
