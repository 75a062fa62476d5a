package user_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/services/user"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
)

// presenceLog collects the events the user service publishes.
type presenceLog struct{ ch chan api.PresenceEvent }

func watchPresence(t *testing.T, nc *nats.Conn) *presenceLog {
	t.Helper()
	l := &presenceLog{ch: make(chan api.PresenceEvent, 1000)}
	natstest.Subscribe(t, nc, subject.Presence, func(m *nats.Msg) {
		var ev api.PresenceEvents
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Errorf("presence: %v", err)
			return
		}
		for _, e := range ev.Events {
			l.ch <- e
		}
	})
	return l
}

func (l *presenceLog) next(t *testing.T, within time.Duration) api.PresenceEvent {
	t.Helper()
	select {
	case e := <-l.ch:
		return e
	case <-time.After(within):
		t.Fatal("no presence event")
		return api.PresenceEvent{}
	}
}

func (l *presenceLog) none(t *testing.T) {
	t.Helper()
	select {
	case e := <-l.ch:
		t.Fatalf("unexpected presence event %+v", e)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestPresenceEvents(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig(user.PolicyKick))
		p := watchPresence(t, e.nc)
		alice := e.register(t, "alice", "pw")
		bob := e.register(t, "bob", "pw")
		e.beat(t, "gw-a", time.Minute)
		e.beat(t, "gw-b", 2*time.Second)

		// Login: online. A second login replacing a live session: nothing.
		if _, err := e.login(t, alice, "pw", "gw-a", "s1"); err != nil {
			t.Fatal(err)
		}
		if ev := p.next(t, time.Second); ev.UserID != alice || !ev.Online || ev.At == 0 {
			t.Fatalf("login event %+v", ev)
		}
		if _, err := e.login(t, alice, "pw", "gw-a", "s2"); err != nil {
			t.Fatal(err)
		}
		p.none(t)

		// Logout of the replaced session: nothing; of the live one: offline.
		if err := e.call(t, subject.UserLogouts, api.LogoutsRequest{Sessions: []api.SessionRef{{UserID: alice, SessionID: "s1"}}}, nil); err != nil {
			t.Fatal(err)
		}
		p.none(t)
		if err := e.call(t, subject.UserLogouts, api.LogoutsRequest{Sessions: []api.SessionRef{{UserID: alice, SessionID: "s2"}}}, nil); err != nil {
			t.Fatal(err)
		}
		if ev := p.next(t, time.Second); ev.UserID != alice || ev.Online {
			t.Fatalf("logout event %+v", ev)
		}

		// A gateway that leaves: its users go offline.
		if _, err := e.login(t, alice, "pw", "gw-a", "s3"); err != nil {
			t.Fatal(err)
		}
		p.next(t, time.Second)
		if err := e.call(t, subject.UserGatewayLeave, api.GatewayLeave{GatewayID: "gw-a"}, nil); err != nil {
			t.Fatal(err)
		}
		if ev := p.next(t, time.Second); ev.UserID != alice || ev.Online {
			t.Fatalf("leave event %+v", ev)
		}

		// A gateway whose lease runs out (killed): its users go offline
		// within the TTL plus the sweep interval, and its next beat says the
		// lease is new.
		if _, err := e.login(t, bob, "pw", "gw-b", "s4"); err != nil {
			t.Fatal(err)
		}
		p.next(t, time.Second)
		if ev := p.next(t, 5*time.Second); ev.UserID != bob || ev.Online {
			t.Fatalf("expiry event %+v", ev)
		}
		if got := e.online(t, bob); len(got) != 0 {
			t.Fatalf("bob still online: %v", got)
		}
		var beat api.GatewayBeatResponse
		if err := e.call(t, subject.UserGatewayBeat, api.GatewayBeat{GatewayID: "gw-b", TTLMillis: 60000}, &beat); err != nil || !beat.New {
			t.Fatalf("beat after expiry: %+v %v", beat, err)
		}
		if err := e.call(t, subject.UserGatewayBeat, api.GatewayBeat{GatewayID: "gw-b", TTLMillis: 60000}, &beat); err != nil || beat.New {
			t.Fatalf("renewal: %+v %v", beat, err)
		}
		p.none(t)
	})
}

func TestProfiles(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig(user.PolicyKick))
		a := e.register(t, "阿丽丝", "pw")
		b := e.register(t, "bob 😀", "pw")
		e.beat(t, "gw", time.Minute)
		if _, err := e.login(t, b, "pw", "gw", "s"); err != nil {
			t.Fatal(err)
		}
		var resp api.ProfilesResponse
		if err := e.call(t, subject.UserProfiles, api.ProfilesRequest{IDs: []int64{b, 999, a, b}}, &resp); err != nil {
			t.Fatal(err)
		}
		want := []api.Profile{{ID: b, Name: "bob 😀", Online: true}, {ID: a, Name: "阿丽丝"}}
		if !slices.Equal(resp.Users, want) {
			t.Fatalf("profiles %+v, want %+v", resp.Users, want)
		}
		if err := e.call(t, subject.UserProfiles, api.ProfilesRequest{}, nil); err == nil {
			t.Fatal("empty ids accepted")
		}
	})
}

func TestGatewaySessions(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig(user.PolicyKick))
		e.beat(t, "gw-a", time.Minute)
		e.beat(t, "gw-b", time.Minute)
		var ids []int64
		for i := range 5 {
			uid := e.register(t, fmt.Sprint("u", i), "pw")
			ids = append(ids, uid)
			gw := "gw-a"
			if i == 2 {
				gw = "gw-b"
			}
			if _, err := e.login(t, uid, "pw", gw, fmt.Sprint("s", i)); err != nil {
				t.Fatal(err)
			}
		}
		var got []api.SessionRef
		after := int64(0)
		for pages := 0; ; pages++ {
			var resp api.SessionsResponse
			if err := e.call(t, subject.UserSessions, api.SessionsRequest{GatewayID: "gw-a", AfterUserID: after, Limit: 2}, &resp); err != nil {
				t.Fatal(err)
			}
			got = append(got, resp.Sessions...)
			if !resp.More {
				break
			}
			after = resp.Sessions[len(resp.Sessions)-1].UserID
			if pages > 5 {
				t.Fatal("paging does not end")
			}
		}
		var want []api.SessionRef
		for _, i := range []int{0, 1, 3, 4} {
			want = append(want, api.SessionRef{UserID: ids[i], SessionID: fmt.Sprint("s", i)})
		}
		if !slices.Equal(got, want) {
			t.Fatalf("sessions %+v, want %+v", got, want)
		}
		if err := e.call(t, subject.UserSessions, api.SessionsRequest{GatewayID: "gw-a", Limit: 0}, nil); err == nil {
			t.Fatal("limit 0 accepted")
		}
	})
}

func TestBatchedLogouts(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig(user.PolicyReject))
		p := watchPresence(t, e.nc)
		e.beat(t, "gw", time.Minute)
		var refs []api.SessionRef
		for i := range 3 {
			uid := e.register(t, fmt.Sprint("u", i), "pw")
			if _, err := e.login(t, uid, "pw", "gw", fmt.Sprint("s", i)); err != nil {
				t.Fatal(err)
			}
			p.next(t, time.Second)
			refs = append(refs, api.SessionRef{UserID: uid, SessionID: fmt.Sprint("s", i)})
		}
		// The third was replaced meanwhile: its stale logout must not end
		// the newer session.
		if _, err := e.login(t, refs[2].UserID, "pw", "gw", "s2"); err != nil {
			t.Fatal(err)
		}
		refs[2].SessionID = "stale"
		if err := e.call(t, subject.UserLogouts, api.LogoutsRequest{Sessions: refs}, nil); err != nil {
			t.Fatal(err)
		}
		offline := map[int64]bool{}
		for range 2 {
			ev := p.next(t, time.Second)
			if ev.Online {
				t.Fatalf("event %+v", ev)
			}
			offline[ev.UserID] = true
		}
		p.none(t)
		if !offline[refs[0].UserID] || !offline[refs[1].UserID] {
			t.Fatalf("offline events for %v", offline)
		}
		if got := e.online(t, refs[0].UserID, refs[1].UserID, refs[2].UserID); !slices.Equal(got, []int64{refs[2].UserID}) {
			t.Fatalf("online after logouts: %v", got)
		}
		if err := e.call(t, subject.UserLogouts, api.LogoutsRequest{}, nil); err == nil {
			t.Fatal("empty batch accepted")
		}
	})
}
