package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// createGroup makes c's user create a group and returns its id.
func (c *client) createGroup(name, desc string) int64 {
	c.t.Helper()
	c.send(frame{"msgid": 8, "groupname": name, "groupdesc": desc})
	r := c.expect(14)
	if r.num("errno") != 0 || r.num("groupid") <= 0 {
		c.t.Fatalf("%s: create group: %v", c.name, r)
	}
	return r.num("groupid")
}

func (c *client) ok(f frame) frame {
	c.t.Helper()
	c.send(f)
	r := c.expect(14)
	if r.num("errno") != 0 {
		c.t.Fatalf("%s: %v: %v", c.name, f, r)
	}
	return r
}

// recvChats reads frames until n chats of msgid arrived, skipping presence
// notices, and returns them.
func (c *client) recvChats(msgid int64, n int) []frame {
	c.t.Helper()
	var out []frame
	for len(out) < n {
		f := c.recv()
		switch f.num("msgid") {
		case msgid:
			out = append(out, f)
		case 16: // presence
		default:
			c.t.Fatalf("%s: unexpected %v", c.name, f)
		}
	}
	return out
}

func TestGroupChatAcrossGateways(t *testing.T) {
	forEachDB(t, clusterOpts{}, func(t *testing.T, c *cluster) {
		names := []string{"ann", "ben", "cat"}
		var cl [3]*client
		var ids [3]int64
		for i, n := range names {
			cl[i] = dial(t, c.gws[i%2].Addr(), '\n', n)
			ids[i] = cl[i].register(n, "pw")
			cl[i].login(ids[i], "pw")
		}
		gid := cl[0].createGroup("friends 友達", "a group 🎉")
		cl[1].ok(frame{"msgid": 9, "groupid": gid})
		cl[2].ok(frame{"msgid": 9, "groupid": gid})
		cl[2].ok(frame{"msgid": 9, "groupid": gid}) // joining twice changes nothing

		// Everyone sends at once; every other member gets every message
		// exactly once, and any two members see common messages in the same
		// order.
		const per = 15
		var wg sync.WaitGroup
		for i := range cl {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < per; k++ {
					cl[i].send(frame{"msgid": 10, "groupid": gid, "msg": fmt.Sprintf("%s-%d", names[i], k)})
				}
			}()
		}
		wg.Wait()
		order := make([][]string, 3)
		for i := range cl {
			replies, chats := 0, 0
			seen := map[string]bool{}
			for replies < per || chats < 2*per {
				f := cl[i].recv()
				switch f.num("msgid") {
				case 14:
					if f.num("errno") != 0 || f.num("re") != 10 {
						t.Fatalf("%s: reply %v", names[i], f)
					}
					replies++
				case 10:
					chats++
					m := f.str("msg")
					if seen[m] || strings.HasPrefix(m, names[i]) || f.num("groupid") != gid || f.num("seq") != int64(chats) {
						t.Fatalf("%s: bad delivery %v", names[i], f)
					}
					seen[m] = true
					order[i] = append(order[i], m)
				case 16:
				default:
					t.Fatalf("%s: unexpected %v", names[i], f)
				}
			}
			cl[i].quiet(100 * time.Millisecond)
		}
		for i := range order {
			for j := i + 1; j < len(order); j++ {
				if a, b := common(order[i], order[j]), common(order[j], order[i]); strings.Join(a, ",") != strings.Join(b, ",") {
					t.Fatalf("%s and %s disagree on order:\n%v\n%v", names[i], names[j], a, b)
				}
			}
		}

		// A non-member cannot send; an unknown group is an error.
		out := dial(t, c.gws[1].Addr(), '\n', "out")
		out.signUp("outsider", "pw")
		out.send(frame{"msgid": 10, "groupid": gid, "msg": "let me in"})
		if r := out.expect(14); r.num("errno") != 115 {
			t.Fatalf("non-member send: %v", r)
		}
		out.send(frame{"msgid": 9, "groupid": 987654})
		if r := out.expect(14); r.num("errno") != 116 {
			t.Fatalf("join unknown group: %v", r)
		}

		// A member who left gets nothing sent after the leave was answered.
		cl[2].ok(frame{"msgid": 19, "groupid": gid})
		cl[0].ok(frame{"msgid": 10, "groupid": gid, "msg": "after cat left"})
		if got := cl[1].recvChats(10, 1); got[0].str("msg") != "after cat left" {
			t.Fatalf("ben got %v", got)
		}
		cl[2].quiet(200 * time.Millisecond)

		// An offline member gets the group messages at login, in order
		// (after what ben acknowledged: his 2*per + 1 messages so far).
		cl[1].ok(frame{"msgid": 13, "seq": 2*per + 1, "reqid": "ack"})
		cl[1].ok(frame{"msgid": 3})
		for k := 0; k < 3; k++ {
			cl[0].ok(frame{"msgid": 10, "groupid": gid, "msg": fmt.Sprint("offline-", k)})
		}
		ack := cl[1].login(ids[1], "pw")
		if groups, _ := ack["groups"].([]any); len(groups) != 1 {
			t.Fatalf("ben's login ack groups: %v", ack["groups"])
		}
		for k, f := range cl[1].recvChats(10, 3) {
			if f.str("msg") != fmt.Sprint("offline-", k) {
				t.Fatalf("offline group message %d: %v", k, f)
			}
		}

		// Members list: roles and states.
		r := cl[0].ok(frame{"msgid": 21, "groupid": gid})
		g := r["group"].(map[string]any)
		users := g["users"].([]any)
		if g["groupname"] != "friends 友達" || len(users) != 2 {
			t.Fatalf("members: %v", g)
		}
		for _, u := range users {
			u := u.(map[string]any)
			wantRole := map[bool]string{true: "creator", false: "normal"}[int64(u["id"].(float64)) == ids[0]]
			if u["role"] != wantRole || u["state"] != "online" {
				t.Fatalf("member %v", u)
			}
		}
	})
}

// common returns the elements of a that are also in b, in a's order.
func common(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if in[x] {
			out = append(out, x)
		}
	}
	return out
}

func TestFriendsAndPresence(t *testing.T) {
	forEachDB(t, clusterOpts{}, func(t *testing.T, c *cluster) {
		a := dial(t, c.gws[0].Addr(), '\n', "a")
		aid, bid := a.signUpWithPeer("alice", "bob", "pw")
		a.send(frame{"msgid": 7, "friendid": aid})
		if r := a.expect(14); r.num("errno") != 101 {
			t.Fatalf("befriend yourself: %v", r)
		}
		a.send(frame{"msgid": 7, "friendid": 987654})
		if r := a.expect(14); r.num("errno") != 105 {
			t.Fatalf("befriend unknown: %v", r)
		}
		a.ok(frame{"msgid": 7, "friendid": bid})
		a.ok(frame{"msgid": 7, "friendid": bid}) // twice changes nothing

		// bob sees alice without adding her, at login, online.
		b := dial(t, c.gws[1].Addr(), '\n', "b")
		ack := b.login(bid, "pw")
		friends, _ := ack["friends"].([]any)
		if len(friends) != 1 {
			t.Fatalf("bob's friends at login: %v", ack)
		}
		if f := friends[0].(map[string]any); int64(f["id"].(float64)) != aid || f["name"] != "alice" || f["state"] != "online" {
			t.Fatalf("bob's friend %v", f)
		}
		// alice is told bob came online.
		a.presence(bid, "online")
		// bob logs out: offline; reconnects: online; drops: offline.
		b.ok(frame{"msgid": 3})
		a.presence(bid, "offline")
		b.login(bid, "pw")
		a.presence(bid, "online")
		b.conn.Close()
		a.presence(bid, "offline")
		r := a.ok(frame{"msgid": 18})
		list := r["friends"].([]any)
		if len(list) != 1 || list[0].(map[string]any)["state"] != "offline" {
			t.Fatalf("friend list %v", r)
		}
		// Remove is mutual.
		a.ok(frame{"msgid": 17, "friendid": bid})
		b2 := dial(t, c.gws[0].Addr(), '\n', "b2")
		if ack := b2.login(bid, "pw"); len(ack["friends"].([]any)) != 0 {
			t.Fatalf("bob still has friends: %v", ack["friends"])
		}
		a.quiet(300 * time.Millisecond) // no presence for a former friend
	})
}

// legacyClient reads the way the original C++ client does: one read into a
// 1024-byte buffer, parsed as a C string (up to the first NUL).
type legacyClient struct {
	*client
}

// frame returns the next frame the original client would parse: it must end
// with NUL, fit the client's 1024-byte buffer and be a JSON object.
func (l legacyClient) frame() map[string]any {
	l.t.Helper()
	raw, err := l.recvRaw(5 * time.Second)
	if err != nil {
		l.t.Fatalf("legacy recv: %v", err)
	}
	if len(raw)+1 > 1024 {
		l.t.Fatalf("legacy frame of %d bytes overflows the original client's buffer: %s", len(raw), raw)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		l.t.Fatalf("legacy frame does not parse: %q: %v", raw, err)
	}
	return m
}

// parseStrings parses an array of JSON-encoded strings as the original client
// does (json::parse of each element).
func parseStrings(t *testing.T, v any) []map[string]any {
	t.Helper()
	arr, ok := v.([]any)
	if !ok {
		t.Fatalf("want an array of strings, got %T %v", v, v)
	}
	var out []map[string]any
	for _, e := range arr {
		s, ok := e.(string)
		if !ok {
			t.Fatalf("element %v is not a string", e)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("element %q does not parse: %v", s, err)
		}
		out = append(out, m)
	}
	return out
}

// TestLegacyClientBytes drives a NUL-framed connection the way the original
// client does and checks every frame it gets parses as that client parses it.
func TestLegacyClientBytes(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	full := dial(t, c.gws[1].Addr(), '\n', "full")
	fid := full.signUp("frank", "pw")

	l := legacyClient{dial(t, c.gws[0].Addr(), 0, "legacy")}
	l.send(`{"msgid":4,"name":"lisa","password":"pw"}`)
	reg := l.frame()
	lid := int64(reg["id"].(float64))
	// The original client sends its own id in every frame.
	l.send(fmt.Sprintf(`{"msgid":1,"id":%d,"password":"pw"}`, lid))
	if ack := l.frame(); ack["errno"].(float64) != 0 || ack["friends"] != nil || ack["groups"] != nil || ack["offlinemsg"] != nil {
		t.Fatalf("first login ack: %v", ack)
	}
	// ADD_FRIEND, CREATE_GROUP: no replies.
	l.send(fmt.Sprintf(`{"msgid":7,"id":%d,"friendid":%d}`, lid, fid))
	l.send(fmt.Sprintf(`{"msgid":8,"id":%d,"groupname":"老朋友","groupdesc":"old friends"}`, lid))
	l.quiet(200 * time.Millisecond)
	// LOGINOUT: no reply; frank, now lisa's friend, sees her go offline and
	// come back.
	l.send(fmt.Sprintf(`{"msgid":3,"id":%d}`, lid))
	l.quiet(200 * time.Millisecond)
	full.presence(lid, "offline")
	l.send(fmt.Sprintf(`{"msgid":1,"id":%d,"password":"pw"}`, lid))
	ack := l.frame()
	friends := parseStrings(t, ack["friends"])
	if len(friends) != 1 || friends[0]["name"] != "frank" || friends[0]["state"] != "online" {
		t.Fatalf("friends %v", friends)
	}
	groups := parseStrings(t, ack["groups"])
	if len(groups) != 1 || groups[0]["groupname"] != "老朋友" || groups[0]["groupdesc"] != "old friends" {
		t.Fatalf("groups %v", groups)
	}
	gid := int64(groups[0]["id"].(float64))
	users := parseStrings(t, groups[0]["users"])
	if len(users) != 1 || users[0]["role"] != "creator" || users[0]["state"] != "online" || users[0]["name"] != "lisa" {
		t.Fatalf("group users %v", users)
	}
	full.presence(lid, "online")

	// frank joins (full dialect) and chats in the group: lisa's frame is the
	// original GROUP_CHAT object.
	full.ok(frame{"msgid": 9, "groupid": gid})
	full.ok(frame{"msgid": 10, "groupid": gid, "msg": "大家好", "time": "2026-11-21 10:00:00"})
	gc := l.frame()
	if gc["msgid"].(float64) != 10 || int64(gc["groupid"].(float64)) != gid || gc["msg"] != "大家好" ||
		int64(gc["id"].(float64)) != fid || gc["name"] != "frank" || !serverTime(gc["time"]) {
		t.Fatalf("group chat to legacy: %v", gc)
	}
	// lisa's GROUP_CHAT: no reply to her, frank gets it.
	l.send(fmt.Sprintf(`{"msgid":10,"id":%d,"name":"lisa","groupid":%d,"msg":"hi frank","time":"2026-11-21 10:00:01"}`, lid, gid))
	l.quiet(200 * time.Millisecond)
	if got := full.recvChats(10, 1)[0]; got.str("msg") != "hi frank" || got.num("id") != lid {
		t.Fatalf("frank got %v", got)
	}
	// ADD_GROUP by a legacy client: no reply.
	l2 := legacyClient{dial(t, c.gws[1].Addr(), 0, "legacy2")}
	l2.send(`{"msgid":4,"name":"leo","password":"pw"}`)
	leo := int64(l2.frame()["id"].(float64))
	l2.send(fmt.Sprintf(`{"msgid":1,"id":%d,"password":"pw"}`, leo))
	l2.frame()
	l2.send(fmt.Sprintf(`{"msgid":9,"id":%d,"groupid":%d}`, leo, gid))
	l2.quiet(200 * time.Millisecond)
	l.send(fmt.Sprintf(`{"msgid":10,"id":%d,"name":"lisa","groupid":%d,"msg":"welcome leo","time":"t"}`, lid, gid))
	if got := l2.frame(); got["msg"] != "welcome leo" {
		t.Fatalf("leo got %v", got)
	}
}
