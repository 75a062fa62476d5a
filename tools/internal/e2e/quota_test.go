package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/natter-chat/natter/services/offline"
	"github.com/natter-chat/natter/shared/api"
)

// TestStorageLimitsOnTheWire: a chat to an inbox holding its limit of
// unacknowledged messages is answered errno 120, one past the sender's
// byte rate errno 121, and a note to oneself is stored and delivered.
func TestStorageLimitsOnTheWire(t *testing.T) {
	forEachDB(t, clusterOpts{offline: func(c *offline.Config) {
		c.InboxMaxMessages = 2
		c.SenderBurst = api.MaxBodyLen
		c.SenderRate = 1
	}}, func(t *testing.T, c *cluster) {
		a := dial(t, c.gws[0].Addr(), '\n', "a")
		aid := a.register("alice", "pw-a")
		bid := a.register("bob", "pw-b")
		a.login(aid, "pw-a")
		for i, want := range []int64{0, 0, 120} {
			a.send(chat(bid, "hi"))
			if f := a.expect(14); f.num("errno") != want || (want != 0 && f.str("errmsg") == "") {
				t.Fatalf("chat %d to bob: %v, want errno %d", i, f, want)
			}
		}
		// A note to oneself: stored and delivered.
		// (The push may come before the answer.)
		a.send(chat(aid, "note"))
		for range 2 {
			switch f := a.recv(); f.num("msgid") {
			case 14:
				if f.num("errno") != 0 {
					t.Fatalf("note to self: %v", f)
				}
			case 6:
				if f.str("msg") != "note" || f.num("id") != aid {
					t.Fatalf("note to self delivered as %v", f)
				}
			default:
				t.Fatalf("note to self: got %v", f)
			}
		}
		// The rate: 64 KiB of bodies per offline instance (each to an
		// inbox of its own), then refused: of 7 chats of 20 KiB one of
		// the two instances gets at least 4.
		big := strings.Repeat("x", 20<<10)
		var errno int64
		for i := 0; i < 7 && errno == 0; i++ {
			to := a.register(fmt.Sprint("carol", i), "pw-c")
			a.send(chat(to, big))
			errno = a.expect(14).num("errno")
		}
		if errno != 121 {
			t.Fatalf("past the sender's rate: errno %d, want 121", errno)
		}
	})
}
