package friend_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/services/friend"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
)

// noticeLog records the presence notices published to any user's subject,
// the way the gateways holding those users would see them.
type noticeLog struct {
	mu    sync.Mutex
	to    map[int64][]api.PresenceNotice
	total int
}

func watchNotices(t *testing.T, nc *nats.Conn) *noticeLog {
	t.Helper()
	l := &noticeLog{to: map[int64][]api.PresenceNotice{}}
	natstest.Subscribe(t, nc, userWildcard(), func(m *nats.Msg) {
		if m.Header.Get(subject.KindHeader) != subject.KindPresence {
			return // a kick or a chat message
		}
		uid, ok := subject.ParseUser(m.Subject)
		var n api.PresenceNotice
		if err := json.Unmarshal(m.Data, &n); !ok || err != nil {
			t.Errorf("notice on %s: %q (%v)", m.Subject, m.Data, err)
			return
		}
		l.mu.Lock()
		l.to[uid] = append(l.to[uid], n)
		l.total++
		l.mu.Unlock()
	})
	return l
}

// of returns the notices user uid received.
func (l *noticeLog) of(uid int64) []api.PresenceNotice {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.to[uid])
}

func (l *noticeLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func publishPresence(t *testing.T, nc *nats.Conn, evs ...api.PresenceEvent) {
	t.Helper()
	body, err := api.Marshal(api.PresenceEvents{Events: evs})
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, nc, body)
}

func publishRaw(t *testing.T, nc *nats.Conn, body []byte) {
	t.Helper()
	if err := nc.Publish(subject.Presence, body); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// settle waits until svc has received events presence events in all,
// fanned out every one of them, and every notice it published has reached
// l. After it, no notice for those events is on its way.
func settle(t *testing.T, svc *friend.Service, l *noticeLog, events int64) friend.PresenceStats {
	t.Helper()
	var st friend.PresenceStats
	eventually.NoError(t, 10*time.Second, func() error {
		st = svc.PresenceStats()
		if !(st.Events == events && st.Pending == 0 && st.Handled == st.Events && int64(l.count()) >= st.Notices) {
			return errors.New("still waiting for the presence fan-out to settle")
		}
		return nil
	})
	if n := l.count(); int64(n) != st.Notices {
		t.Errorf("%d notices received, %d published", n, st.Notices)
	}
	return st
}

func TestPresenceFanOut(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig())
		u := e.register(t, "u")
		friends := []int64{e.register(t, "f1"), e.register(t, "f2"), e.register(t, "f3")}
		stranger := e.register(t, "stranger")
		for _, f := range friends {
			e.add(t, f, u)
		}
		e.add(t, friends[0], stranger) // a friend's friend hears nothing of u
		l := watchNotices(t, e.nc)

		at := time.Now().UnixMilli()
		publishPresence(t, e.nc, api.PresenceEvent{UserID: u, Online: true, At: at})
		eventually.NoError(t, time.Second, func() error {
			for _, f := range friends {
				if len(l.of(f)) == 0 {
					return errors.New("still waiting for a notice at each of u's friends")
				}
			}
			return nil
		})
		settle(t, e.svc, l, 1)
		want := []api.PresenceNotice{{ID: u, Online: true, At: at}}
		for _, f := range friends {
			if got := l.of(f); !slices.Equal(got, want) {
				t.Errorf("friend %d got %+v, want %+v", f, got, want)
			}
		}
		if got := l.of(stranger); len(got) != 0 {
			t.Errorf("stranger got %+v", got)
		}
		if got := l.of(u); len(got) != 0 {
			t.Errorf("u itself got %+v", got)
		}

		publishPresence(t, e.nc, api.PresenceEvent{UserID: u, Online: false, At: at + 5})
		st := settle(t, e.svc, l, 2)
		want = append(want, api.PresenceNotice{ID: u, Online: false, At: at + 5})
		for _, f := range friends {
			if got := l.of(f); !slices.Equal(got, want) {
				t.Errorf("friend %d got %+v, want %+v", f, got, want)
			}
		}
		if st.Notices != 6 || st.Fanouts != 2 || st.Lookups != 2 || st.Queries != 2 {
			t.Errorf("stats %+v, want 6 notices, 2 fan-outs, 2 lookups, 2 queries", st)
		}
	})
}

// TestPresenceFromLogins drives presence through the real user service: a
// friend logging in and out is seen by the user.
func TestPresenceFromLogins(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig())
		u, f := e.register(t, "u"), e.register(t, "f")
		e.add(t, u, f)
		l := watchNotices(t, e.nc)
		e.login(t, f)
		eventually.NoError(t, 5*time.Second, func() error {
			if got := len(l.of(u)); got != 1 {
				return fmt.Errorf("still waiting for u to hear f came online: got %v, want == 1", got)
			}
			return nil
		})
		if n := l.of(u)[0]; n.ID != f || !n.Online || n.At <= 0 {
			t.Errorf("notice %+v, want f=%d online", n, f)
		}
		if err := e.call(subject.UserLogouts, api.LogoutsRequest{Sessions: []api.SessionRef{{UserID: f, SessionID: fmt.Sprint("s", f)}}}, nil); err != nil {
			t.Fatal(err)
		}
		eventually.NoError(t, 5*time.Second, func() error {
			if got := len(l.of(u)); got != 2 {
				return fmt.Errorf("still waiting for u to hear f went offline: got %v, want == 2", got)
			}
			return nil
		})
		if n := l.of(u)[1]; n.ID != f || n.Online {
			t.Errorf("notice %+v, want f=%d offline", n, f)
		}
		if got := l.of(f); len(got) != 0 {
			t.Errorf("f got %+v; u never came online", got)
		}
	})
}

// TestPresenceCoalesced: within a window only each user's latest event
// counts, whether the events come in one message or several, in order or
// not; an event older than one already fanned out is dropped.
func TestPresenceCoalesced(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		cfg := testConfig()
		// Long enough that back-to-back publishes share a window.
		cfg.CoalesceWindow = 500 * time.Millisecond
		e := newEnv(t, db, cfg)
		u, f1, f2 := e.register(t, "u"), e.register(t, "f1"), e.register(t, "f2")
		e.add(t, u, f1)
		e.add(t, u, f2)
		l := watchNotices(t, e.nc)
		at := time.Now().UnixMilli()
		var events int64
		step := func(name string, want api.PresenceNotice, msgs ...[]api.PresenceEvent) {
			t.Helper()
			for _, m := range msgs {
				publishPresence(t, e.nc, m...)
				events += int64(len(m))
			}
			settle(t, e.svc, l, events)
			for _, f := range []int64{f1, f2} {
				got := l.of(f)
				if len(got) == 0 || got[len(got)-1] != want {
					t.Fatalf("%s: friend %d got %+v, want last %+v", name, f, got, want)
				}
			}
		}
		ev := func(online bool, d int64) []api.PresenceEvent {
			return []api.PresenceEvent{{UserID: u, Online: online, At: at + d}}
		}

		step("flap in three messages", api.PresenceNotice{ID: u, Online: true, At: at + 2},
			ev(true, 0), ev(false, 1), ev(true, 2))
		if n := l.count(); n != 2 {
			t.Fatalf("a flap cost %d notices, want 1 per friend", n)
		}
		step("flap in one message", api.PresenceNotice{ID: u, Online: false, At: at + 12},
			[]api.PresenceEvent{{UserID: u, Online: false, At: at + 10}, {UserID: u, Online: true, At: at + 11},
				{UserID: u, Online: false, At: at + 12}})
		if n := l.count(); n != 4 {
			t.Fatalf("after the second flap: %d notices, want 2 per friend", n)
		}
		step("out of order in one window", api.PresenceNotice{ID: u, Online: true, At: at + 31},
			ev(true, 31), ev(false, 30))
		if n := l.count(); n != 6 {
			t.Fatalf("after out-of-order events: %d notices, want 3 per friend", n)
		}
		st := e.svc.PresenceStats()
		step("stale", api.PresenceNotice{ID: u, Online: true, At: at + 31}, ev(false, 20))
		if n := l.count(); n != 6 {
			t.Errorf("a stale event cost %d notices", n-6)
		}
		if got := e.svc.PresenceStats(); got.Stale != st.Stale+1 || got.Lookups != st.Lookups {
			t.Errorf("stale event: stats %+v, before %+v", got, st)
		}
	})
}

// TestPresenceThousandFriends: a user with 1,000 friends coming online is
// one friend query and 1,000 notices.
func TestPresenceThousandFriends(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig())
		u := e.register(t, "popular")
		friends := e.registerMany(t, "fan", 1000)
		e.addMany(t, u, friends)
		l := watchNotices(t, e.nc)
		before := e.svc.PresenceStats()

		at := time.Now().UnixMilli()
		publishPresence(t, e.nc, api.PresenceEvent{UserID: u, Online: true, At: at})
		eventually.NoError(t, 10*time.Second, func() error {
			if got := l.count(); got < len(friends) {
				return fmt.Errorf("still waiting for 1000 notices: got %v, want >= len(friends)", got)
			}
			return nil
		})
		st := settle(t, e.svc, l, 1)
		want := []api.PresenceNotice{{ID: u, Online: true, At: at}}
		for _, f := range friends {
			if got := l.of(f); !slices.Equal(got, want) {
				t.Fatalf("friend %d got %+v, want %+v", f, got, want)
			}
		}
		if n := st.Queries - before.Queries; n != 1 {
			t.Errorf("fan-out to 1000 friends ran %d friend queries, want 1", n)
		}
		if n := st.Notices - before.Notices; n != 1000 {
			t.Errorf("%d notices published, want 1000", n)
		}
	})
}

// TestPresenceMalformed: malformed presence messages and events are
// counted and dropped; the fan-out goes on.
func TestPresenceMalformed(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t), testConfig())
	u, f := e.register(t, "u"), e.register(t, "f")
	e.add(t, u, f)
	l := watchNotices(t, e.nc)
	for _, body := range []string{`{not json`, `{"events":"x"}`, ``, `{"events":[{"user_id":0,"online":true}]}`,
		`{"events":[{"user_id":-3,"online":true},{"user_id":"x"}]}`} {
		publishRaw(t, e.nc, []byte(body))
	}
	at := time.Now().UnixMilli()
	publishPresence(t, e.nc, api.PresenceEvent{UserID: u, Online: true, At: at}, api.PresenceEvent{UserID: 0, At: at})
	st := settle(t, e.svc, l, 1)
	if st.Malformed != 6 {
		t.Errorf("malformed %d, want 6 (4 messages, 2 events)", st.Malformed)
	}
	if got := l.of(f); !slices.Equal(got, []api.PresenceNotice{{ID: u, Online: true, At: at}}) {
		t.Errorf("f got %+v", got)
	}
}

// TestStopFansOutPending: events still in their window at Stop are fanned
// out before Stop returns.
func TestStopFansOutPending(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		cfg := testConfig()
		cfg.CoalesceWindow = friend.MaxCoalesceWindow
		e := newEnv(t, db, cfg)
		u, f := e.register(t, "u"), e.register(t, "f")
		e.add(t, u, f)
		l := watchNotices(t, e.nc)
		at := time.Now().UnixMilli()
		publishPresence(t, e.nc, api.PresenceEvent{UserID: u, Online: true, At: at})
		eventually.NoError(t, 5*time.Second, func() error {
			if got := e.svc.PresenceStats().Pending; got != 1 {
				return fmt.Errorf("still waiting for the event to be pending: got %v, want == 1", got)
			}
			return nil
		})
		if err := e.svc.Stop(); err != nil {
			t.Fatal(err)
		}
		st := e.svc.PresenceStats()
		if st.Pending != 0 || st.Handled != 1 || st.Notices != 1 {
			t.Errorf("after Stop: stats %+v, want the event fanned out", st)
		}
		eventually.NoError(t, 5*time.Second, func() error {
			if got := len(l.of(f)); got != 1 {
				return fmt.Errorf("still waiting for the notice: got %v, want == 1", got)
			}
			return nil
		})
	})
}
