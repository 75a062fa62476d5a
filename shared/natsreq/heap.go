package natsreq

// callHeap is a binary min-heap of calls by their next event (call.when);
// each call knows its index, so a call is moved or removed in O(log n).
// Guarded by Requester.mu.
type callHeap []*call

func (h *callHeap) push(c *call) {
	c.index = len(*h)
	*h = append(*h, c)
	h.up(c.index)
}

// remove takes out the call at index i.
func (h *callHeap) remove(i int) {
	s := *h
	last := len(s) - 1
	c := s[i]
	if i != last {
		s[i] = s[last]
		s[i].index = i
	}
	s[last] = nil
	*h = s[:last]
	c.index = -1
	if i != last {
		h.fix(i)
	}
}

// fix restores the order after the call at index i changed its time.
func (h callHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h callHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].when <= h[i].when {
			return
		}
		h.swap(i, p)
		i = p
	}
}

// down moves the call at i towards the leaves and says whether it moved.
func (h callHeap) down(i int) bool {
	start := i
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		m := l
		if r := l + 1; r < len(h) && h[r].when < h[l].when {
			m = r
		}
		if h[i].when <= h[m].when {
			break
		}
		h.swap(i, m)
		i = m
	}
	return i != start
}

func (h callHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
