package e2e

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/tools/internal/legacymodel"
)

// The original C++ client against natter, through a faithful model of its
// read loop (tools/internal/legacymodel): one recv of 1024 bytes per frame,
// parsed up to the first NUL, the rest of the read thrown away. Nothing may
// be lost, nothing shown twice while the client reads, and no frame may make
// it abort.

// legacyLogin connects the model to gw and logs uid in, returning the
// client and the LOGIN_ACK.
func legacyLogin(t *testing.T, c *cluster, gw int, uid int64, pw string) (*legacymodel.Client, legacymodel.Frame) {
	t.Helper()
	lc, err := legacymodel.Dial(c.gws[gw].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lc.Close() })
	if err := lc.Send(fmt.Sprintf(`{"msgid":1,"id":%d,"password":%q}`, uid, pw)); err != nil {
		t.Fatal(err)
	}
	ack, _, err := lc.WaitFor(0, 5*time.Second, func(f legacymodel.Frame) bool { return f.MsgID() == 2 })
	if err != nil {
		t.Fatalf("legacy login: %v", err)
	}
	if ack.Num("errno") != 0 {
		t.Fatalf("legacy login refused: %v", ack)
	}
	return lc, ack
}

// waitChats waits until lc has shown n chat texts and returns them.
func waitChats(t *testing.T, lc *legacymodel.Client, n int, timeout time.Duration) []string {
	t.Helper()
	var got []string
	deadline := time.Now().Add(timeout)
	for {
		var err error
		got, err = lc.Chats()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) >= n {
			return got
		}
		if err := lc.Err(); err != nil {
			t.Fatalf("after %d of %d chats: %v", len(got), n, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d chats shown after %s", len(got), n, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wantSequence checks that got is exactly prefix 1..n, in order.
func wantSequence(t *testing.T, got []string, prefix string, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("shown %d chats, want %d: %q", len(got), n, got)
	}
	for i, m := range got {
		if want := fmt.Sprintf("%s %03d", prefix, i+1); m != want {
			t.Fatalf("chat %d is %q, want %q (all: %q)", i+1, m, want, got)
		}
	}
}

// checkModel fails if the model threw data away or aborted.
func checkModel(t *testing.T, lc *legacymodel.Client) {
	t.Helper()
	if err := lc.Err(); errors.Is(err, legacymodel.ErrAborted) {
		t.Fatal(err)
	}
	if d := lc.Dropped(); d > 0 {
		t.Fatalf("the original client threw away %d bytes after a frame: a lost frame", d)
	}
}

// sendChats stores n chats from full to uid, each acknowledged.
func sendChats(t *testing.T, full *client, uid int64, prefix string, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		full.send(chat(uid, fmt.Sprintf("%s %03d", prefix, i)))
		full.expect(14)
	}
}

// TestLegacyWaitingMessages: 20 and 200 messages waiting at login are all
// shown once, in order (the LOGIN_ACK carries what fits, the rest follow);
// once the client ends cleanly they count as delivered.
func TestLegacyWaitingMessages(t *testing.T) {
	for _, n := range []int{20, 200} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c := newCluster(t, clusterOpts{})
			full := dial(t, c.gws[0].Addr(), '\n', "full")
			_, bid := full.signUpWithPeer("alice", "bob", "pw")
			sendChats(t, full, bid, "waiting message number", n)

			lc, ack := legacyLogin(t, c, 1, bid, "pw")
			if offline, _ := ack.Strings("offlinemsg"); len(offline) == 0 {
				t.Errorf("no offline message in the LOGIN_ACK: %v", ack)
			}
			wantSequence(t, waitChats(t, lc, n, 30*time.Second), "waiting message number", n)
			checkModel(t, lc)
			// "3. quit": the client exits; what it read is acknowledged.
			lc.Close()
			eventually.NoError(t, 10*time.Second, func() error {
				lc2, ack := legacyLogin(t, c, 0, bid, "pw")
				defer lc2.Close()
				offline, _ := ack.Strings("offlinemsg")
				if len(offline) != 0 {
					return errors.New("messages shown to a client that ended cleanly came again")
				}
				return nil
			})
		})
	}
}

// TestLegacyBurst: 50 messages pushed at once to a client that reads
// continuously are each shown exactly once, in order; to a client that
// stops reading for 2 s they pile up and are all shown when it reads again.
func TestLegacyBurst(t *testing.T) {
	for _, pause := range []time.Duration{0, 2 * time.Second} {
		t.Run(fmt.Sprintf("pause %s", pause), func(t *testing.T) {
			c := newCluster(t, clusterOpts{})
			full := dial(t, c.gws[0].Addr(), '\n', "full")
			_, bid := full.signUpWithPeer("alice", "bob", "pw")
			lc, _ := legacyLogin(t, c, 0, bid, "pw")
			lc.Pause(pause) // before its next read
			for i := 1; i <= 50; i++ {
				full.send(chat(bid, fmt.Sprintf("burst %03d", i)))
			}
			for range 50 {
				full.expect(14)
			}
			wantSequence(t, waitChats(t, lc, 50, 30*time.Second), "burst", 50)
			time.Sleep(100 * time.Millisecond) // nothing more may come
			got, _ := lc.Chats()
			wantSequence(t, got, "burst", 50)
			checkModel(t, lc)
		})
	}
}

// TestLegacyCrashRedelivers: a client that stopped reading and is then
// killed (its kernel resets the connection: data was left unread) loses
// nothing: its next login shows everything it may not have shown.
func TestLegacyCrashRedelivers(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	full := dial(t, c.gws[0].Addr(), '\n', "full")
	_, bid := full.signUpWithPeer("alice", "bob", "pw")
	lc, _ := legacyLogin(t, c, 0, bid, "pw")
	lc.Pause(time.Hour)
	sendChats(t, full, bid, "unread", 10)
	time.Sleep(300 * time.Millisecond) // the records reach the client's socket
	lc.Kill()
	shown, _ := lc.Chats()
	checkModel(t, lc)

	eventually.NoError(t, 10*time.Second, func() error {
		// The gateway releases the session once it sees the reset.
		lc2, err := legacymodel.Dial(c.gws[1].Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer lc2.Close()
		lc2.Send(fmt.Sprintf(`{"msgid":1,"id":%d,"password":"pw"}`, bid))
		ack, _, err := lc2.WaitFor(0, 5*time.Second, func(f legacymodel.Frame) bool { return f.MsgID() == 2 })
		if err != nil || ack.Num("errno") != 0 {
			return errors.New("login after the crash")
		}
		// Every message at least once; those shown before the crash
		// may come again, so count what is shown until all ten are,
		// not how many chats came.
		var got []string
		missing := func() []int {
			seen := map[string]bool{}
			for _, m := range append(append([]string(nil), shown...), got...) {
				seen[m] = true
			}
			var out []int
			for i := 1; i <= 10; i++ {
				if !seen[fmt.Sprintf("unread %03d", i)] {
					out = append(out, i)
				}
			}
			return out
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if got, err = lc2.Chats(); err != nil {
				t.Fatal(err)
			}
			if len(missing()) == 0 {
				break
			}
			if err := lc2.Err(); err != nil || time.Now().After(deadline) {
				t.Fatalf("messages %v lost (%v): before the crash %q, after %q", missing(), err, shown, got)
			}
		}
		checkModel(t, lc2)
		return nil
	})
}

// TestLegacyLargeFrames: a LOGIN_ACK with 15 friends and a group of many
// members, and a 2 KB message, reach the original client in frames it can
// parse: the lists cut to fit, the long text cut with a marker.
func TestLegacyLargeFrames(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	full := dial(t, c.gws[0].Addr(), '\n', "full")
	bid := full.signUp("bob-with-a-long-name", "pw")
	var friends []int64
	for i := range 15 {
		f := dial(t, c.gws[1].Addr(), '\n', fmt.Sprintf("f%d", i))
		fid := f.register(fmt.Sprintf("friend-number-%02d-has-a-name", i), "pw")
		friends = append(friends, fid)
		full.ok(frame{"msgid": 7, "friendid": fid})
	}
	g := full.ok(frame{"msgid": 8, "groupname": "a group with a long name", "groupdesc": strings.Repeat("d", 150)})
	gid := g.num("groupid")
	for _, fid := range friends[:8] {
		f := dial(t, c.gws[1].Addr(), '\n', "joiner")
		f.login(fid, "pw")
		f.ok(frame{"msgid": 9, "groupid": gid})
	}
	full.send(frame{"msgid": 3})
	full.expect(14)

	lc, ack := legacyLogin(t, c, 0, bid, "pw")
	fs, err := ack.Strings("friends")
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) == 0 || len(fs) > 15 {
		t.Fatalf("%d friends in the LOGIN_ACK", len(fs))
	}
	t.Logf("LOGIN_ACK carries %d of 15 friends", len(fs))
	checkModel(t, lc)

	// A 2 KB message from a friend.
	sender := dial(t, c.gws[1].Addr(), '\n', "sender")
	sender.login(friends[0], "pw")
	long := strings.Repeat("长", 700) // 2,100 bytes of UTF-8
	sender.ok(chat(bid, long))
	sender.ok(chat(bid, "after the long one"))
	got := waitChats(t, lc, 2, 10*time.Second)
	if !strings.HasPrefix(got[0], strings.Repeat("长", 50)) || !strings.Contains(got[0], "cut: too long for this client") {
		t.Fatalf("long message shown as %q", got[0])
	}
	if got[1] != "after the long one" {
		t.Fatalf("then %q", got[1])
	}
	checkModel(t, lc)
}

// TestLegacyKicked: under the kick policy a replaced original client is
// shown why before its connection closes.
func TestLegacyKicked(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	full := dial(t, c.gws[0].Addr(), '\n', "full")
	bid := full.register("bob", "pw")
	lc, _ := legacyLogin(t, c, 0, bid, "pw")
	full.login(bid, "pw")
	f, _, err := lc.WaitFor(0, 5*time.Second, func(f legacymodel.Frame) bool { return f.MsgID() == 6 })
	if err != nil {
		t.Fatal(err)
	}
	if f.Str("name") != "natter" || !strings.Contains(f.Str("msg"), "logged in elsewhere") {
		t.Fatalf("kick notice %v", f)
	}
	eventually.NoError(t, 10*time.Second, func() error {
		if lc.Err() == nil {
			return errors.New("the kicked connection was not closed")
		}
		return nil
	})
	checkModel(t, lc)
}
