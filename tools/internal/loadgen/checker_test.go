package loadgen

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// script drives one conversation and its recipient through a Checker.
type script struct {
	t0 time.Time
	cv *Conversation
	r  *Recipient
}

func mid(n int64) string { return fmt.Sprintf("mid-%d", n) }

// send sends count messages, all acknowledged by the server.
func (s script) send(count int) {
	for range count {
		s.cv.Acked(s.cv.Send(s.t0))
	}
}

// recv delivers message n with its own mid and the given push seq.
func (s script) recv(n, seq int64) { s.recvMid(n, mid(n), seq) }

func (s script) recvMid(n int64, m string, seq int64) {
	s.r.Seq(seq)
	s.cv.Received(n, m, s.t0, s.t0.Add(time.Millisecond))
}

func TestChecker(t *testing.T) {
	type want struct {
		sent, acked, sendErrors, unanswered, delivered int64
		lost, dup, reordered, seqErrors, unexpected    int64
		pending                                        int64
		clean                                          bool
	}
	tests := []struct {
		name string
		run  func(s script)
		want want
	}{
		{
			name: "clean",
			run: func(s script) {
				s.send(3)
				s.recv(1, 1)
				s.recv(2, 2)
				s.recv(3, 3)
			},
			want: want{sent: 3, acked: 3, delivered: 3, clean: true},
		},
		{
			name: "lost",
			run: func(s script) {
				s.send(3)
				s.recv(1, 1)
				s.recv(3, 2)
			},
			want: want{sent: 3, acked: 3, delivered: 2, lost: 1, pending: 1},
		},
		{
			name: "duplicated n",
			run: func(s script) {
				s.send(2)
				s.recv(1, 1)
				s.recv(2, 2)
				s.recv(2, 3)
			},
			want: want{sent: 2, acked: 2, delivered: 2, dup: 1},
		},
		{
			name: "duplicated mid",
			run: func(s script) {
				s.send(2)
				s.recv(1, 1)
				s.recvMid(2, mid(1), 2)
			},
			want: want{sent: 2, acked: 2, delivered: 1, dup: 1, lost: 1, pending: 1},
		},
		{
			name: "reordered",
			run: func(s script) {
				s.send(3)
				s.recv(1, 1)
				s.recv(3, 2)
				s.recv(2, 3)
			},
			want: want{sent: 3, acked: 3, delivered: 3, reordered: 1},
		},
		{
			name: "seq not increasing",
			run: func(s script) {
				s.send(2)
				s.recv(1, 5)
				s.recv(2, 5)
			},
			want: want{sent: 2, acked: 2, delivered: 2, seqErrors: 1},
		},
		{
			name: "a failed send is a send error, not lost",
			run: func(s script) {
				s.send(1)
				n := s.cv.Send(s.t0)
				s.cv.Failed(n, 109)
				s.cv.Failed(s.cv.Send(s.t0), ErrnoTransport)
				s.recv(1, 1)
			},
			want: want{sent: 3, acked: 1, sendErrors: 2, delivered: 1, clean: true},
		},
		{
			name: "no answer is unanswered, not lost",
			run: func(s script) {
				s.send(1)
				s.cv.Send(s.t0)
				s.recv(1, 1)
			},
			want: want{sent: 2, acked: 1, unanswered: 1, delivered: 1, pending: 1, clean: true},
		},
		{
			name: "arrival before the server's reply",
			run: func(s script) {
				n := s.cv.Send(s.t0)
				s.recv(n, 1)
				s.cv.Acked(n)
			},
			want: want{sent: 1, acked: 1, delivered: 1, clean: true},
		},
		{
			name: "arrival of a message never sent",
			run: func(s script) {
				s.send(1)
				s.recv(1, 1)
				s.recv(7, 2)
			},
			want: want{sent: 1, acked: 1, delivered: 1, unexpected: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewChecker()
			tt.run(script{t0: time.Unix(1000, 0), cv: c.Conversation(), r: c.Recipient()})
			r := c.Result()
			got := want{
				sent: r.Sent, acked: r.Acked, sendErrors: r.SendErrors, unanswered: r.Unanswered,
				delivered: r.Delivered, lost: r.Lost, dup: r.Duplicates, reordered: r.Reordered,
				seqErrors: r.SeqErrors, unexpected: r.Unexpected, pending: c.Pending(), clean: r.Clean(),
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestCheckerConversationsAreSeparate(t *testing.T) {
	c := NewChecker()
	t0 := time.Unix(1000, 0)
	a, b := c.Conversation(), c.Conversation()
	for range 2 {
		a.Acked(a.Send(t0))
		b.Acked(b.Send(t0))
	}
	// The same n and the same mid in another conversation are not
	// duplicates; n 1 after n 2 of another conversation is not reordered.
	a.Received(1, "m1", t0, t0)
	a.Received(2, "m2", t0, t0)
	b.Received(1, "m1", t0, t0)
	b.Received(2, "m2", t0, t0)
	if r := c.Result(); !r.Clean() || r.Delivered != 4 {
		t.Fatalf("result = %+v, want 4 delivered, clean", r)
	}
}

func TestCheckerWindow(t *testing.T) {
	c := NewChecker()
	t0 := time.Unix(1000, 0)
	c.SetWindow(t0.Add(time.Second), t0.Add(2*time.Second))
	cv := c.Conversation()
	send := func(at time.Time) int64 {
		n := cv.Send(at)
		cv.Acked(n)
		return n
	}
	warm := send(t0) // warmup: checked, not measured
	cv.Received(warm, "w", t0, t0.Add(500*time.Millisecond))
	for i := range 10 {
		sent := t0.Add(time.Second + time.Duration(i)*50*time.Millisecond)
		cv.Received(send(sent), mid(int64(i)), sent, sent.Add(time.Duration(i+1)*time.Millisecond))
	}
	late := t0.Add(1990 * time.Millisecond) // sent in the window, arrives after it
	cv.Received(send(late), "late", late, late.Add(100*time.Millisecond))

	r := c.Result()
	if r.SentInWindow != 11 || r.DeliveredInWindow != 10 || r.Delivered != 12 || !r.Clean() {
		t.Fatalf("result = %+v, want 11 sent and 10 delivered in the window, 12 delivered", r)
	}
	l := r.Latency
	if l.Count != 11 || l.Max < 99 || l.Max > 101 || l.P50 < 5.9 || l.P50 > 6.1 {
		t.Fatalf("latency = %+v, want 11 values, p50 6 ms, max 100 ms", l)
	}
}

// groupScript drives one group sender's conversation and its recipients'
// connections through a Checker.
type groupScript struct {
	t0    time.Time
	gc    *GroupConversation
	conns []*Recipient // one per recipient
	seqs  []int64      // the last seq pushed to each recipient
}

func newGroupScript(c *Checker, recipients int) *groupScript {
	s := &groupScript{t0: time.Unix(1000, 0), gc: c.GroupConversation(recipients), seqs: make([]int64, recipients)}
	for range recipients {
		s.conns = append(s.conns, c.Recipient())
	}
	return s
}

// send sends count messages, all acknowledged by the server.
func (s *groupScript) send(count int) {
	for range count {
		s.gc.Acked(s.gc.Send(s.t0))
	}
}

// recv delivers message n to recipient r, with the next seq of r's inbox,
// arriving (r+1) ms after it was sent.
func (s *groupScript) recv(r int, n int64) {
	s.seqs[r]++
	s.conns[r].Seq(s.seqs[r])
	s.gc.Received(r, n, s.t0, s.t0.Add(time.Duration(r+1)*time.Millisecond))
}

// recvAll delivers messages 1..n to every recipient in order.
func (s *groupScript) recvAll(n int64) {
	for k := int64(1); k <= n; k++ {
		for r := range s.conns {
			s.recv(r, k)
		}
	}
}

func TestCheckerGroup(t *testing.T) {
	type want struct {
		sent, acked, sendErrors, delivered      int64
		lost, lostMsgs, dup, reordered, seqErrs int64
		unexpected, pending, lastMember         int64
		clean                                   bool
	}
	tests := []struct {
		name       string
		recipients int
		run        func(s *groupScript)
		want       want
	}{
		{
			name:       "clean",
			recipients: 4,
			run: func(s *groupScript) {
				s.send(3)
				s.recvAll(3)
			},
			want: want{sent: 3, acked: 3, delivered: 12, lastMember: 3, clean: true},
		},
		{
			name:       "a member lost a message",
			recipients: 4,
			run: func(s *groupScript) {
				s.send(3)
				for r := range 4 {
					s.recv(r, 1)
					if r != 2 {
						s.recv(r, 2)
					}
					s.recv(r, 3)
				}
			},
			want: want{sent: 3, acked: 3, delivered: 11, lost: 1, lostMsgs: 1, pending: 1, lastMember: 2},
		},
		{
			name:       "a duplicate at one member",
			recipients: 4,
			run: func(s *groupScript) {
				s.send(2)
				s.recvAll(2)
				s.recv(1, 2)
			},
			want: want{sent: 2, acked: 2, delivered: 8, dup: 1, lastMember: 2},
		},
		{
			name:       "a reorder at one member",
			recipients: 4,
			run: func(s *groupScript) {
				s.send(3)
				for r := range 4 {
					if r == 3 {
						s.recv(r, 1)
						s.recv(r, 3)
						s.recv(r, 2)
						continue
					}
					s.recv(r, 1)
					s.recv(r, 2)
					s.recv(r, 3)
				}
			},
			want: want{sent: 3, acked: 3, delivered: 12, reordered: 1, lastMember: 3},
		},
		{
			name:       "a seq not increasing at one member",
			recipients: 2,
			run: func(s *groupScript) {
				s.send(2)
				s.recvAll(2)
				s.conns[0].Seq(1)
			},
			want: want{sent: 2, acked: 2, delivered: 4, seqErrs: 1, lastMember: 2},
		},
		{
			name:       "every member missing the same message is one lost message",
			recipients: 3,
			run: func(s *groupScript) {
				s.send(2)
				for r := range 3 {
					s.recv(r, 2)
				}
			},
			want: want{sent: 2, acked: 2, delivered: 3, lost: 3, lostMsgs: 1, pending: 3, lastMember: 1},
		},
		{
			name:       "more than 64 recipients",
			recipients: 130,
			run: func(s *groupScript) {
				s.send(2)
				s.recvAll(2)
				s.recv(129, 2)
			},
			want: want{sent: 2, acked: 2, delivered: 260, dup: 1, lastMember: 2},
		},
		{
			name:       "arrivals before the server's reply",
			recipients: 2,
			run: func(s *groupScript) {
				n := s.gc.Send(s.t0)
				s.recv(0, n)
				if got := s.gc.c.Pending(); got != 1 {
					t.Errorf("pending before the reply = %d, want 1 (unreplied)", got)
				}
				s.recv(1, n)
				s.gc.Acked(n)
			},
			want: want{sent: 1, acked: 1, delivered: 2, lastMember: 1, clean: true},
		},
		{
			name:       "a failed send is a send error, not lost",
			recipients: 2,
			run: func(s *groupScript) {
				s.send(1)
				s.gc.Failed(s.gc.Send(s.t0), 115)
				for r := range 2 {
					s.recv(r, 1)
				}
			},
			want: want{sent: 2, acked: 1, sendErrors: 1, delivered: 2, lastMember: 1, clean: true},
		},
		{
			name:       "arrivals of a message never sent or at no recipient",
			recipients: 2,
			run: func(s *groupScript) {
				s.send(1)
				s.recvAll(1)
				s.gc.Received(0, 9, s.t0, s.t0)
				s.gc.Received(2, 1, s.t0, s.t0)
			},
			want: want{sent: 1, acked: 1, delivered: 2, unexpected: 2, lastMember: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewChecker()
			tt.run(newGroupScript(c, tt.recipients))
			r := c.Result()
			if r.LastMember == nil {
				t.Fatal("no last-member latency in a run with groups")
			}
			got := want{
				sent: r.Sent, acked: r.Acked, sendErrors: r.SendErrors, delivered: r.Delivered,
				lost: r.Lost, lostMsgs: r.LostMessages, dup: r.Duplicates, reordered: r.Reordered,
				seqErrs: r.SeqErrors, unexpected: r.Unexpected, pending: c.Pending(),
				lastMember: r.LastMember.Count, clean: r.Clean(),
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// The last-member latency of a message is its slowest recipient's; every
// delivery counts in the delivery latency.
func TestCheckerGroupLatency(t *testing.T) {
	c := NewChecker()
	s := newGroupScript(c, 10)
	s.send(1)
	s.recvAll(1) // recipient r gets it after r+1 ms
	r := c.Result()
	if l := r.Latency; l.Count != 10 || l.P50 < 4.9 || l.P50 > 5.1 || l.Max < 9.9 || l.Max > 10.1 {
		t.Errorf("delivery latency = %+v, want 10 values, p50 5 ms, max 10 ms", l)
	}
	if l := r.LastMember; l.Count != 1 || l.P50 < 9.9 || l.P50 > 10.1 {
		t.Errorf("last-member latency = %+v, want one value of 10 ms", l)
	}
	if one := NewChecker().Result(); one.LastMember != nil {
		t.Errorf("last-member latency %+v in a run without groups", one.LastMember)
	}
}

// BenchmarkGroupReceived is the Checker's cost per delivery with many
// reader goroutines recording arrivals of one 2,000-member group at once.
func BenchmarkGroupReceived(b *testing.B) {
	const recipients = 1999
	c := NewChecker()
	gc := c.GroupConversation(recipients)
	t0 := time.Now()
	msgs := int64(b.N/recipients + 1)
	for range msgs {
		gc.Acked(gc.Send(t0))
	}
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := next.Add(1) - 1
			gc.Received(int(k%recipients), k/recipients+1, t0, t0.Add(time.Millisecond))
		}
	})
}
