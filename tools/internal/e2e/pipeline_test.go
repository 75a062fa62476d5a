package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/natter-chat/natter/services/offline"
)

// TestPipelinedChatsKeepOrder: 1,000 chats sent on one connection without
// waiting for the answers are answered in order, each stored once, and
// arrive in order.
func TestPipelinedChatsKeepOrder(t *testing.T) {
	c := newCluster(t, clusterOpts{floodRate: 100000})
	a := dial(t, c.gws[0].Addr(), '\n', "a")
	b := dial(t, c.gws[1].Addr(), '\n', "b")
	a.signUp("alice", "pw")
	bid := b.signUp("bob", "pw")
	const n = 1000
	go func() {
		for i := 1; i <= n; i++ {
			a.send(frame{"msgid": 6, "toid": bid, "msg": fmt.Sprint(i), "reqid": i})
		}
	}()
	mids := map[string]bool{}
	for i := 1; i <= n; i++ {
		r := a.expect(14)
		if r.num("errno") != 0 || r.num("reqid") != int64(i) || mids[r.str("mid")] {
			t.Fatalf("answer %d: %v", i, r)
		}
		mids[r.str("mid")] = true
	}
	for i := 1; i <= n; i++ {
		if f := b.expect(6); f.str("msg") != fmt.Sprint(i) || f.num("seq") != int64(i) {
			t.Fatalf("message %d: %v", i, f)
		}
	}
}

// BenchmarkOneConnectionChats: chats from one connection, sent one at a
// time (each after its answer) and pipelined (all sent, then the answers
// read): the connection's chats are stored together while one store is in
// flight. Reports chats/s.
func BenchmarkOneConnectionChats(b *testing.B) {
	for _, mode := range []string{"serial", "pipelined"} {
		b.Run(mode, func(b *testing.B) {
			// bob never reads: no inbox limit, and no sender rate, so
			// that every chat is stored rather than refused.
			c := newCluster(b, clusterOpts{floodRate: 1e9, offline: func(c *offline.Config) {
				c.InboxMaxMessages, c.InboxMaxBytes, c.SenderRate = -1, -1, -1
			}})
			a := dial(b, c.gws[0].Addr(), '\n', "a")
			bob := dial(b, c.gws[1].Addr(), '\n', "b")
			aid := a.register("alice", "pw")
			bid := bob.register("bob", "pw")
			a.login(aid, "pw")
			start := time.Now()
			b.ResetTimer()
			if mode == "serial" {
				for i := range b.N {
					a.send(frame{"msgid": 6, "toid": bid, "msg": fmt.Sprint(i)})
					a.expect(14)
				}
			} else {
				done := make(chan struct{})
				go func() {
					defer close(done)
					for i := range b.N {
						a.send(frame{"msgid": 6, "toid": bid, "msg": fmt.Sprint(i)})
					}
				}()
				for range b.N {
					a.expect(14)
				}
				<-done
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "chats/s")
		})
	}
}
