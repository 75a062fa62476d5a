package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/natter-chat/natter/services/offline"
)

// TestGroupChatNamesRefusedMembers: a group chat stored for every member
// but one whose inbox is full is answered errno 0 with that member in
// "refused" (full dialect); when every other member's inbox is full it is
// errno 120 and stored for nobody.
func TestGroupChatNamesRefusedMembers(t *testing.T) {
	forEachDB(t, clusterOpts{offline: func(c *offline.Config) {
		c.InboxMaxMessages = 2
	}}, func(t *testing.T, c *cluster) {
		a := dial(t, c.gws[0].Addr(), '\n', "a")
		aid := a.register("ann", "pw-a")
		bid := a.register("ben", "pw-b")
		cid := a.register("cat", "pw-c")
		a.login(aid, "pw-a")
		gid := a.createGroup("g", "")
		for _, who := range []struct {
			id int64
			pw string
		}{{bid, "pw-b"}, {cid, "pw-c"}} {
			m := dial(t, c.gws[1].Addr(), '\n', "member")
			m.login(who.id, who.pw)
			m.ok(frame{"msgid": 9, "groupid": gid})
			m.conn.Close()
		}
		// cat's inbox is full: two chats nobody acknowledges.
		for range 2 {
			a.ok(chat(cid, "to cat"))
		}
		r := a.ok(frame{"msgid": 10, "groupid": gid, "msg": "to the group", "reqid": "g1"})
		if got := refusedOf(t, r); len(got) != 1 || got[0] != cid {
			t.Fatalf("group chat with cat's inbox full: %v, want refused [%d]", r, cid)
		}
		// ben's inbox now holds the group chat; one more fills it, then
		// nobody has room.
		r = a.ok(frame{"msgid": 10, "groupid": gid, "msg": "again"})
		if got := refusedOf(t, r); len(got) != 1 || got[0] != cid {
			t.Fatalf("second group chat: %v, want refused [%d]", r, cid)
		}
		a.send(frame{"msgid": 10, "groupid": gid, "msg": "no room"})
		if f := a.expect(14); f.num("errno") != 120 || f.str("errmsg") == "" {
			t.Fatalf("group chat with every inbox full: %v, want errno 120", f)
		}
		// ben gets exactly the two group chats that were stored for him.
		b := dial(t, c.gws[1].Addr(), '\n', "ben")
		b.login(bid, "pw-b")
		got := b.recvChats(10, 2)
		if got[0].str("msg") != "to the group" || got[1].str("msg") != "again" {
			t.Fatalf("ben received %v", got)
		}
		b.quiet(300 * time.Millisecond)
	})
}

// refusedOf reads a REPLY's "refused" list; absent is empty.
func refusedOf(t *testing.T, r frame) []int64 {
	t.Helper()
	raw, ok := r["refused"]
	if !ok {
		return nil
	}
	b, _ := json.Marshal(raw)
	var ids []int64
	if err := json.Unmarshal(b, &ids); err != nil {
		t.Fatalf("refused in %v: %v", r, err)
	}
	return ids
}
