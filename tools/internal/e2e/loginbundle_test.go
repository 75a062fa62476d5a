package e2e

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/subject"
)

// TestLoginIsOneRequest: a login (password or resume token) costs the
// gateway one request, user.login; the user service reads the inbox page,
// the friends and the groups and answers them with the login, and the
// LOGIN_ACK carries them all as before.
func TestLoginIsOneRequest(t *testing.T) {
	const gwInbox = "_INBOX.gwtest"
	forEachDB(t, clusterOpts{gwInbox: gwInbox}, func(t *testing.T, c *cluster) {
		// Every request on the login's subjects, by who asked.
		var (
			mu       sync.Mutex
			fromGW   []string
			fromSvcs []string
		)
		watched := map[string]bool{subject.UserLogin: true, subject.OfflineFetch: true,
			subject.FriendList: true, subject.GroupMine: true}
		mon := c.conn()
		natstest.Subscribe(t, mon, "natter.svc.>", func(m *nats.Msg) {
			if !watched[m.Subject] {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if strings.HasPrefix(m.Reply, gwInbox+".") {
				fromGW = append(fromGW, m.Subject)
			} else {
				fromSvcs = append(fromSvcs, m.Subject)
			}
		})
		reset := func() {
			mu.Lock()
			fromGW, fromSvcs = nil, nil
			mu.Unlock()
		}
		check := func(what string) {
			t.Helper()
			// The services' requests are answered before the LOGIN_ACK;
			// the monitor may see them a moment later.
			deadline := time.Now().Add(5 * time.Second)
			for {
				mu.Lock()
				gw, svcs := append([]string(nil), fromGW...), append([]string(nil), fromSvcs...)
				mu.Unlock()
				// A request the user service re-sent (its attempt timed
				// out on a loaded machine) counts once.
				asked := map[string]bool{}
				for _, s := range svcs {
					asked[s] = true
				}
				if len(asked) >= 3 || time.Now().After(deadline) {
					if len(gw) != 1 || gw[0] != subject.UserLogin {
						t.Fatalf("%s: the gateway asked %v, want only %s", what, gw, subject.UserLogin)
					}
					if len(asked) != 3 || !asked[subject.OfflineFetch] || !asked[subject.FriendList] || !asked[subject.GroupMine] {
						t.Fatalf("%s: the user service asked %v, want the inbox, friends and groups", what, svcs)
					}
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}

		b := dial(t, c.gws[1].Addr(), '\n', "b")
		bid, aid := b.signUpWithPeer("bob", "alice", "pw")
		b.ok(frame{"msgid": 7, "friendid": aid})
		gid := b.createGroup("crew", "")
		b.ok(chat(aid, "while you were out"))

		a := dial(t, c.gws[0].Addr(), '\n', "a")
		reset()
		ack := a.login(aid, "pw", "dialect", "full")
		check("password login")
		friends, _ := ack["friends"].([]any)
		if len(friends) != 1 || int64(friends[0].(map[string]any)["id"].(float64)) != bid {
			t.Fatalf("alice's friends at login: %v", ack)
		}
		if groups, _ := ack["groups"].([]any); len(groups) != 0 {
			t.Fatalf("alice's groups at login: %v", ack)
		}
		if ack.num("pending") != 1 {
			t.Fatalf("alice's pending at login: %v", ack)
		}
		if m := a.expect(6); m.str("msg") != "while you were out" {
			t.Fatalf("replayed %v", m)
		}
		token := ack.str("token")
		a.ok(frame{"msgid": 9, "groupid": gid})
		a.conn.Close()

		// The resume: the same, with the group now.
		a2 := dial(t, c.gws[1].Addr(), '\n', "a2")
		reset()
		ack = a2.login(aid, "", "token", token, "dialect", "full")
		check("resume")
		if groups, _ := ack["groups"].([]any); len(groups) != 1 || len(ack["friends"].([]any)) != 1 || ack["incomplete"] != nil {
			t.Fatalf("alice's lists at resume: %v", ack)
		}
	})
}
