package loadgen

import (
	"fmt"
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
