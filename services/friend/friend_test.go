package friend_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/services/friend"
	"github.com/natter-chat/natter/services/user"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/logtest"
	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
	"github.com/natter-chat/natter/shared/svcmain"
)

// env is a friend service and the real user service on one test NATS
// server and database, and a client connection to call them with.
type env struct {
	ns   *server.Server
	db   *sqldb.DB
	nc   *nats.Conn // the client's connection
	user *user.Service
	svc  *friend.Service
}

func testConfig() friend.Config {
	cfg := friend.DefaultConfig()
	cfg.Concurrency = 8
	cfg.RequestTimeout = 10 * time.Second
	return cfg
}

func newEnv(t *testing.T, db *sqldb.DB, cfg friend.Config) *env {
	t.Helper()
	ns := natstest.Run(t)
	e := &env{ns: ns, db: db, nc: natstest.Connect(t, ns)}
	e.user = e.startUser(t)
	e.svc = e.start(t, cfg)
	return e
}

// startUser runs the real user service on the test's NATS and database.
func (e *env) startUser(t *testing.T) *user.Service {
	t.Helper()
	cfg := user.DefaultConfig()
	cfg.BcryptCost = bcrypt.MinCost
	return natstest.StartService(t, e.ns, user.Start, e.db, cfg, logtest.New(t, slog.LevelDebug))
}

// start runs a friend service instance on its own connection, stopped when
// the test ends (before the connection closes).
func (e *env) start(t *testing.T, cfg friend.Config) *friend.Service {
	t.Helper()
	return natstest.StartService(t, e.ns, friend.Start, e.db, cfg, logtest.New(t, slog.LevelDebug))
}

func (e *env) call(subj string, req, resp any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return api.Call(ctx, e.nc, subj, req, resp)
}

func (e *env) register(t *testing.T, name string) int64 {
	t.Helper()
	var resp api.RegisterResponse
	if err := e.call(subject.UserRegister, api.RegisterRequest{Name: name, Password: "pw"}, &resp); err != nil {
		t.Fatalf("register %q: %v", name, err)
	}
	return resp.ID
}

// registerMany registers n users named prefix0..prefix<n-1>, a few at a
// time, and returns their ids in name order.
func (e *env) registerMany(t *testing.T, prefix string, n int) []int64 {
	t.Helper()
	ids := make([]int64, n)
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				var resp api.RegisterResponse
				errs[i] = e.call(subject.UserRegister, api.RegisterRequest{Name: fmt.Sprint(prefix, i), Password: "pw"}, &resp)
				ids[i] = resp.ID
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return ids
}

// login makes users online: their gateway beats, then each logs in there.
func (e *env) login(t *testing.T, ids ...int64) {
	t.Helper()
	const gw = "gw-test"
	if err := e.call(subject.UserGatewayBeat, api.GatewayBeat{GatewayID: gw, TTLMillis: time.Minute.Milliseconds()}, nil); err != nil {
		t.Fatalf("gateway beat: %v", err)
	}
	for _, id := range ids {
		req := api.LoginRequest{UserID: id, Password: "pw", GatewayID: gw, SessionID: fmt.Sprint("s", id)}
		if err := e.call(subject.UserLogin, req, nil); err != nil {
			t.Fatalf("login %d: %v", id, err)
		}
	}
}

func (e *env) add(t *testing.T, userID, friendID int64) {
	t.Helper()
	if err := e.call(subject.FriendAdd, api.FriendRequest{UserID: userID, FriendID: friendID}, nil); err != nil {
		t.Fatalf("add %d -> %d: %v", userID, friendID, err)
	}
}

// addMany befriends user with every one of friends, a few at a time.
func (e *env) addMany(t *testing.T, userID int64, friends []int64) {
	t.Helper()
	errs := make([]error, len(friends))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(friends); i = int(next.Add(1) - 1) {
				errs[i] = e.call(subject.FriendAdd, api.FriendRequest{UserID: userID, FriendID: friends[i]}, nil)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func (e *env) list(t *testing.T, userID int64) []api.Profile {
	t.Helper()
	var resp api.FriendListResponse
	if err := e.call(subject.FriendList, api.FriendListRequest{UserID: userID}, &resp); err != nil {
		t.Fatalf("list %d: %v", userID, err)
	}
	if resp.Friends == nil {
		t.Errorf("list %d: friends is null, want a list", userID)
	}
	return resp.Friends
}

func ids(ps []api.Profile) []int64 {
	out := make([]int64, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*friend.Config)
		flag   string // the flag the error names; "": valid
	}{
		{"default", func(*friend.Config) {}, ""},
		{"no concurrency", func(c *friend.Config) { c.Concurrency = 0 }, "--db-conns"},
		{"no timeout", func(c *friend.Config) { c.RequestTimeout = 0 }, "--request-timeout 0s"},
		{"no window", func(c *friend.Config) { c.CoalesceWindow = 0 }, "--presence-coalesce 0s"},
		{"negative window", func(c *friend.Config) { c.CoalesceWindow = -time.Second }, "--presence-coalesce -1s"},
		{"longest window", func(c *friend.Config) { c.CoalesceWindow = friend.MaxCoalesceWindow }, ""},
		{"window too long", func(c *friend.Config) { c.CoalesceWindow = friend.MaxCoalesceWindow + 1 }, "--presence-coalesce"},
	}
	all := friend.DefaultConfig()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := friend.DefaultConfig()
			tt.modify(&cfg)
			err := cfg.Validate()
			if (err == nil) != (tt.flag == "") || err != nil && !strings.Contains(err.Error(), tt.flag) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tt.flag)
			}
		})
		if tt.flag != "" && !strings.Contains(tt.name, "negative") {
			tt.modify(&all)
		}
	}
	// Every problem at once is reported at once.
	err := all.Validate()
	for _, tt := range tests {
		if tt.flag != "" && (err == nil || !strings.Contains(err.Error(), strings.Fields(tt.flag)[0])) {
			t.Errorf("all bad: Validate() = %v, want it to name %s", err, tt.flag)
		}
	}
}

func TestConfigFromFlags(t *testing.T) {
	set := flag.NewFlagSet("test", flag.ContinueOnError)
	for _, f := range svcmain.Flags(friend.Flags()...) {
		if err := f.Apply(set); err != nil {
			t.Fatal(err)
		}
	}
	if err := set.Parse([]string{"--presence-coalesce", "50ms", "--request-timeout", "3s"}); err != nil {
		t.Fatal(err)
	}
	cfg := friend.ConfigFromFlags(cli.NewContext(cli.NewApp(), set, nil))
	want := friend.DefaultConfig()
	want.CoalesceWindow = 50 * time.Millisecond
	want.RequestTimeout = 3 * time.Second
	if cfg != want {
		t.Errorf("config %+v, want %+v", cfg, want)
	}
}

func TestAddIsMutualAndIdempotent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig())
		alice, bob, carol := e.register(t, "alice"), e.register(t, "bob"), e.register(t, "carol")
		e.add(t, alice, bob)
		e.add(t, alice, bob)
		e.add(t, bob, alice)
		if got := ids(e.list(t, alice)); !slices.Equal(got, []int64{bob}) {
			t.Errorf("alice's friends %v, want [%d]", got, bob)
		}
		if got := ids(e.list(t, bob)); !slices.Equal(got, []int64{alice}) {
			t.Errorf("bob's friends %v, want [%d]", got, alice)
		}
		if got := e.list(t, carol); len(got) != 0 {
			t.Errorf("carol's friends %v, want none", got)
		}
		e.add(t, carol, alice)
		if got := ids(e.list(t, alice)); !slices.Equal(got, []int64{bob, carol}) {
			t.Errorf("alice's friends %v, want [%d %d]", got, bob, carol)
		}
	})
}

func TestAddErrors(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig())
		alice := e.register(t, "alice")
		tests := []struct {
			name             string
			userID, friendID int64
			want             error
		}{
			{"yourself", alice, alice, api.ErrBadRequest},
			{"unknown friend", alice, alice + 1000, api.ErrNotFound},
			{"no user", 0, alice, api.ErrBadRequest},
			{"no friend", alice, 0, api.ErrBadRequest},
			{"negative friend", alice, -alice, api.ErrBadRequest},
			{"nothing", 0, 0, api.ErrBadRequest},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := e.call(subject.FriendAdd, api.FriendRequest{UserID: tt.userID, FriendID: tt.friendID}, nil)
				if !errors.Is(err, tt.want) {
					t.Errorf("add %d -> %d: got %v, want %v", tt.userID, tt.friendID, err, tt.want)
				}
			})
		}
		err := e.call(subject.FriendAdd, api.FriendRequest{UserID: alice, FriendID: alice}, nil)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Message != "cannot befriend yourself" {
			t.Errorf("self add: %v, want bad_request: cannot befriend yourself", err)
		}
		if got := e.list(t, alice); len(got) != 0 {
			t.Errorf("alice's friends after failed adds: %v", got)
		}
	})
}

func TestRemoveIsMutual(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig())
		alice, bob, carol := e.register(t, "alice"), e.register(t, "bob"), e.register(t, "carol")
		e.add(t, alice, bob)
		e.add(t, carol, alice)
		remove := func(userID, friendID int64) error {
			return e.call(subject.FriendRemove, api.FriendRequest{UserID: userID, FriendID: friendID}, nil)
		}
		// bob removes alice: gone on both sides.
		if err := remove(bob, alice); err != nil {
			t.Fatal(err)
		}
		if got := ids(e.list(t, alice)); !slices.Equal(got, []int64{carol}) {
			t.Errorf("alice's friends %v, want [%d]", got, carol)
		}
		if got := e.list(t, bob); len(got) != 0 {
			t.Errorf("bob's friends %v, want none", got)
		}
		// Removing a non-friend (again, never a friend, yourself) changes nothing.
		for _, p := range [][2]int64{{alice, bob}, {bob, carol}, {alice, alice}, {alice, alice + 1000}} {
			if err := remove(p[0], p[1]); err != nil {
				t.Errorf("remove %v: %v", p, err)
			}
		}
		if got := ids(e.list(t, carol)); !slices.Equal(got, []int64{alice}) {
			t.Errorf("carol's friends %v, want [%d]", got, alice)
		}
		if err := remove(0, alice); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("remove with no user: got %v, want %v", err, api.ErrBadRequest)
		}
	})
}

func TestListNamesAndOnline(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig())
		alice := e.register(t, "alice")
		names := []string{"bob", "張偉", "𠮷野家", "😀🎉👩‍👩‍👧 party", "Zoë 🚀 李"}
		var want []api.Profile
		for _, name := range names {
			id := e.register(t, name)
			want = append(want, api.Profile{ID: id, Name: name})
		}
		// Added in reverse order: the list is in id order all the same.
		for i := len(want) - 1; i >= 0; i-- {
			e.add(t, alice, want[i].ID)
		}
		e.login(t, want[1].ID) // 張偉 is online, the others are not
		want[1].Online = true

		// One profiles request for the whole list.
		var profileCalls atomic.Int64
		sub, err := e.nc.Subscribe(subject.UserProfiles, func(*nats.Msg) { profileCalls.Add(1) })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := e.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		got := e.list(t, alice)
		if !slices.Equal(got, want) {
			t.Errorf("alice's friends\n got %+v\nwant %+v", got, want)
		}
		for i := range min(len(got), len(want)) {
			if got[i].Name != want[i].Name {
				t.Errorf("name %d: bytes % x, want % x", i, got[i].Name, want[i].Name)
			}
		}
		eventually.NoError(t, 5*time.Second, func() error {
			if got := profileCalls.Load(); got < 1 {
				return fmt.Errorf("still waiting for the profiles request: got %v, want >= 1", got)
			}
			return nil
		})
		if n := profileCalls.Load(); n != 1 {
			t.Errorf("list of %d friends made %d profiles requests, want 1", len(want), n)
		}
		// The friend sees alice, offline.
		if got := e.list(t, want[0].ID); !slices.Equal(got, []api.Profile{{ID: alice, Name: "alice"}}) {
			t.Errorf("bob's friends %+v", got)
		}
	})
}

// TestUserServiceUnavailable: without a user service, add and list answer
// busy (retry), not an internal error, and no friendship is stored.
func TestUserServiceUnavailable(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t), testConfig())
	alice, bob, carol := e.register(t, "alice"), e.register(t, "bob"), e.register(t, "carol")
	e.add(t, alice, bob)
	if err := e.user.Stop(); err != nil {
		t.Fatal(err)
	}
	err := e.call(subject.FriendAdd, api.FriendRequest{UserID: alice, FriendID: carol}, nil)
	if !errors.Is(err, api.ErrBusy) {
		t.Errorf("add without a user service: got %v, want %v", err, api.ErrBusy)
	}
	err = e.call(subject.FriendList, api.FriendListRequest{UserID: alice}, nil)
	if !errors.Is(err, api.ErrBusy) {
		t.Errorf("list without a user service: got %v, want %v", err, api.ErrBusy)
	}
	// Removing needs no user service.
	if err := e.call(subject.FriendRemove, api.FriendRequest{UserID: alice, FriendID: bob}, nil); err != nil {
		t.Errorf("remove without a user service: %v", err)
	}
	// A user without friends needs no user service either.
	if got := e.list(t, carol); len(got) != 0 {
		t.Errorf("carol's friends %v", got)
	}
}

func TestMalformedRequests(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig())
		subjects := []string{subject.FriendAdd, subject.FriendRemove, subject.FriendList}
		bodies := []string{``, `{not json`, `[1,2]`, `{"user_id":"x","friend_id":"y"}`, `null x`, `{}`,
			`{"user_id":0,"friend_id":0}`, `{"user_id":-1,"friend_id":2}`}
		for _, subj := range subjects {
			for _, body := range bodies {
				t.Run(subj+" "+body, func(t *testing.T) {
					natstest.CheckRefused(t, e.nc, subj, body, api.ErrBadRequest)
				})
			}
		}
		// Still serving.
		alice, bob := e.register(t, "alice"), e.register(t, "bob")
		e.add(t, alice, bob)
	})
}

// TestQueueGroup runs two instances on one NATS: both take requests and
// presence events.
func TestQueueGroup(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig())
		second := e.start(t, testConfig())
		alice, bob := e.register(t, "alice"), e.register(t, "bob")
		e.add(t, alice, bob)
		const n = 50
		for range n {
			if got := ids(e.list(t, alice)); !slices.Equal(got, []int64{bob}) {
				t.Fatalf("alice's friends %v", got)
			}
		}
		// Stats are counted after each handler returns; poll until all
		// lists are in.
		eventually.NoError(t, 5*time.Second, func() error {
			return natstest.SharedRequests(t, e.nc, subject.FriendService, subject.FriendList, 2, n)
		})

		now := time.Now().UnixMilli()
		for i := range n {
			publishPresence(t, e.nc, api.PresenceEvent{UserID: alice, Online: i%2 == 0, At: now + int64(i)})
		}
		eventually.NoError(t, 5*time.Second, func() error {
			a, b := e.svc.PresenceStats(), second.PresenceStats()
			if !(a.Events > 0 && b.Events > 0 && a.Events+b.Events == n) {
				return errors.New("still waiting for both instances to take presence events")
			}
			return nil
		})
	})
}

func TestEndpointInfo(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t), testConfig())
	natstest.CheckEndpoints(t, e.nc, subject.FriendService, subject.FriendAdd, subject.FriendRemove, subject.FriendList)
}

// TestStartInvalidConfig refuses to start, and leaves nothing behind.
func TestStartInvalidConfig(t *testing.T) {
	ns := natstest.Run(t)
	cfg := testConfig()
	cfg.CoalesceWindow = 0
	if _, err := friend.Start(context.Background(), natstest.Connect(t, ns), dbtest.SQLite(t), cfg, logtest.New(t, slog.LevelDebug)); err == nil {
		t.Fatal("started with an invalid config")
	}
	if _, err := natstest.Connect(t, ns).Request(subject.FriendList, []byte(`{"user_id":1}`), time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("list after a failed start: %v, want no responders", err)
	}
}

// userWildcard matches every subject.User subject. It is derived from
// subject.User so that no subject is spelled out here.
func userWildcard() string {
	return strings.TrimSuffix(subject.User(1), "1") + "*"
}
