package group

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/services/offline"
	"github.com/natter-chat/natter/services/user"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/logtest"
	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
)

const password = "pw"

// env is a NATS server and a database with the real user, offline and group
// services on them, and a client connection to call them with.
type env struct {
	ns  *server.Server
	db  *sqldb.DB
	nc  *nats.Conn
	grp *Service
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.RequestTimeout = 20 * time.Second
	return cfg
}

func newEnv(t testing.TB, db *sqldb.DB) *env {
	t.Helper()
	ns := natstest.Run(t)
	e := &env{ns: ns, db: db, nc: natstest.Connect(t, ns)}
	ucfg := user.DefaultConfig()
	ucfg.BcryptCost = bcrypt.MinCost
	natstest.StartService(t, ns, user.Start, db, ucfg, logtest.New(t, slog.LevelWarn))
	ocfg := offline.DefaultConfig()
	ocfg.RequestTimeout = 20 * time.Second
	natstest.StartService(t, ns, offline.Start, db, ocfg, logtest.New(t, slog.LevelWarn))
	e.grp = e.startGroup(t, testConfig())
	return e
}

// startGroup runs a group service instance on its own connection, stopped
// when the test ends (before the connection closes).
func (e *env) startGroup(t testing.TB, cfg Config) *Service {
	t.Helper()
	return natstest.StartService(t, e.ns, Start, e.db, cfg, logtest.New(t, slog.LevelWarn))
}

func (e *env) call(subj string, req, resp any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return api.Call(ctx, e.nc, subj, req, resp)
}

func (e *env) must(t testing.TB, subj string, req, resp any) {
	t.Helper()
	if err := e.call(subj, req, resp); err != nil {
		t.Fatalf("%s %+v: %v", subj, req, err)
	}
}

func (e *env) register(t testing.TB, name string) int64 {
	t.Helper()
	var resp api.RegisterResponse
	e.must(t, subject.UserRegister, api.RegisterRequest{Name: name, Password: password}, &resp)
	return resp.ID
}

func (e *env) users(t testing.TB, prefix string, n int) []int64 {
	t.Helper()
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = e.register(t, fmt.Sprintf("%s%d", prefix, i))
	}
	return ids
}

func (e *env) create(t testing.TB, uid int64, name, desc string) int64 {
	t.Helper()
	var resp api.GroupCreateResponse
	e.must(t, subject.GroupCreate, api.GroupCreateRequest{UserID: uid, Name: name, Desc: desc}, &resp)
	if resp.GroupID <= 0 {
		t.Fatalf("create %q: group id %d", name, resp.GroupID)
	}
	return resp.GroupID
}

func (e *env) join(t testing.TB, gid int64, uids ...int64) {
	t.Helper()
	for _, u := range uids {
		e.must(t, subject.GroupJoin, api.GroupRequest{UserID: u, GroupID: gid}, nil)
	}
}

func (e *env) leave(t testing.TB, gid, uid int64) {
	t.Helper()
	e.must(t, subject.GroupLeave, api.GroupRequest{UserID: uid, GroupID: gid}, nil)
}

func (e *env) members(t testing.TB, gid, asker int64) api.Group {
	t.Helper()
	var resp api.GroupMembersResponse
	e.must(t, subject.GroupMembers, api.GroupRequest{UserID: asker, GroupID: gid}, &resp)
	return resp.Group
}

func textBody(s string) json.RawMessage {
	b, err := json.Marshal(map[string]string{"text": s})
	if err != nil {
		panic(err)
	}
	return b
}

func (e *env) send(uid, gid int64, cid, text string) (api.StoreResponse, error) {
	var resp api.StoreResponse
	err := e.call(subject.GroupSend, api.GroupSendRequest{UserID: uid, GroupID: gid, CID: cid, Body: textBody(text)}, &resp)
	return resp, err
}

func (e *env) mustSend(t testing.TB, uid, gid int64, text string) string {
	t.Helper()
	resp, err := e.send(uid, gid, "", text)
	if err != nil {
		t.Fatalf("send %q from %d to group %d: %v", text, uid, gid, err)
	}
	if resp.MID == "" || resp.Duplicate {
		t.Fatalf("send %q: %+v", text, resp)
	}
	return resp.MID
}

// inbox returns every entry of uid's inbox, in seq order.
func (e *env) inbox(t testing.TB, uid int64) []api.InboxMessage {
	t.Helper()
	var all []api.InboxMessage
	for {
		var page api.FetchResponse
		e.must(t, subject.OfflineFetch, api.FetchRequest{UserID: uid, After: int64(len(all)), Limit: offline.MaxFetchLimit}, &page)
		all = append(all, page.Messages...)
		if len(page.Messages) == 0 || int64(len(all)) >= page.Last {
			return all
		}
	}
}

// lastSeq returns the highest seq in uid's inbox.
func (e *env) lastSeq(t testing.TB, uid int64) int64 {
	t.Helper()
	var page api.FetchResponse
	e.must(t, subject.OfflineFetch, api.FetchRequest{UserID: uid, After: 0, Limit: 1}, &page)
	return page.Last
}

func mids(ms []api.InboxMessage) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.MID
	}
	return out
}

// pushes records the kind=msg pushes to some users, as their gateway would
// see them: all subscriptions feed one channel read by one goroutine.
type pushes struct {
	mu     sync.Mutex
	byUser map[int64][]api.InboxMessage
	other  int // pushes that were not a decodable kind=msg
}

func watch(t testing.TB, nc *nats.Conn, uids ...int64) *pushes {
	t.Helper()
	p := &pushes{byUser: map[int64][]api.InboxMessage{}}
	ch := make(chan *nats.Msg, 1<<16)
	var subs []*nats.Subscription
	for _, u := range uids {
		sub, err := nc.ChanSubscribe(subject.User(u), ch)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case m := <-ch:
				p.record(m)
			}
		}
	})
	t.Cleanup(func() {
		for _, sub := range subs {
			sub.Unsubscribe()
		}
		close(done)
		wg.Wait()
	})
	return p
}

func (p *pushes) record(m *nats.Msg) {
	uid, ok := subject.ParseUser(m.Subject)
	var im api.InboxMessage
	p.mu.Lock()
	defer p.mu.Unlock()
	if !ok || m.Header.Get(subject.KindHeader) != subject.KindMsg || json.Unmarshal(m.Data, &im) != nil {
		p.other++
		return
	}
	p.byUser[uid] = append(p.byUser[uid], im)
}

func (p *pushes) of(uid int64) []api.InboxMessage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.byUser[uid])
}

func (p *pushes) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.other
	for _, ms := range p.byUser {
		n += len(ms)
	}
	return n
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		flag   string // what the error names; "": valid
	}{
		{"default", func(*Config) {}, ""},
		{"no concurrency", func(c *Config) { c.Concurrency = 0 }, "--db-conns"},
		{"too much concurrency", func(c *Config) { c.Concurrency = maxConcurrency + 1 }, "--db-conns"},
		{"no timeout", func(c *Config) { c.RequestTimeout = 0 }, "--request-timeout 0s"},
		{"negative timeout", func(c *Config) { c.RequestTimeout = -time.Second }, "--request-timeout -1s"},
		{"no cache", func(c *Config) { c.CacheGroups = 0 }, "--group-cache 0"},
		{"cache of one", func(c *Config) { c.CacheGroups = 1 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.modify(&cfg)
			err := cfg.Validate()
			if (err == nil) != (tt.flag == "") || err != nil && !strings.Contains(err.Error(), tt.flag) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tt.flag)
			}
		})
	}
	// Every problem at once is reported at once.
	err := Config{}.Validate()
	for _, flag := range []string{"--db-conns", "--request-timeout 0s", "--group-cache 0"} {
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("zero config: Validate() = %v, want it to name %s", err, flag)
		}
	}
	ns := natstest.Run(t)
	if _, err := Start(context.Background(), natstest.Connect(t, ns), dbtest.SQLite(t), Config{}, logtest.New(t, slog.LevelWarn)); err == nil {
		t.Error("Start accepted an invalid config")
	}
}

func TestCreate(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		alice := e.register(t, "alice")
		cases := []struct {
			name, desc string
			ok         bool
		}{
			{"g", "", true},
			{"張偉的群", "一个描述", true},
			{"😀🎉👩‍👩‍👧 party 𠮷", "emoji 🚀 and 𠮷野家", true},
			{"same name", "", true},
			{"same name", "names are not unique", true},
			{strings.Repeat("字", api.MaxGroupName), strings.Repeat("😀", api.MaxGroupDesc), true},
			{strings.Repeat("😀", api.MaxGroupName), "two lines\nand a\ttab", true},
			{strings.Repeat("字", api.MaxGroupName+1), "", false},
			{"ok", strings.Repeat("字", api.MaxGroupDesc+1), false},
			{"", "", false},
			{" leading", "", false},
			{"trailing ", "", false},
			{"ctrl\x01", "", false},
			{"ok", "bell\a", false},
		}
		for _, c := range cases {
			var resp api.GroupCreateResponse
			err := e.call(subject.GroupCreate, api.GroupCreateRequest{UserID: alice, Name: c.name, Desc: c.desc}, &resp)
			if !c.ok {
				if !errors.Is(err, api.ErrBadRequest) {
					t.Errorf("create %q/%q: %v, want bad request", c.name, c.desc, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("create %q/%q: %v", c.name, c.desc, err)
				continue
			}
			// The creator is the only member, with role creator; name and
			// desc round-trip byte for byte.
			g := e.members(t, resp.GroupID, alice)
			want := api.Group{ID: resp.GroupID, Name: c.name, Desc: c.desc,
				Members: []api.Member{{ID: alice, Name: "alice", Role: api.RoleCreator}}}
			if g.ID != want.ID || g.Name != want.Name || g.Desc != want.Desc || !slices.Equal(g.Members, want.Members) {
				t.Errorf("group %q: got %+v, want %+v", c.name, g, want)
			}
		}
	})
}

func TestJoinLeave(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		u := e.users(t, "u", 4)
		gid := e.create(t, u[0], "g", "")

		e.join(t, gid, u[1])
		e.join(t, gid, u[1]) // idempotent
		e.join(t, gid, u[0]) // the creator joining again changes nothing
		g := e.members(t, gid, u[1])
		want := []api.Member{{ID: u[0], Name: "u0", Role: api.RoleCreator}, {ID: u[1], Name: "u1", Role: api.RoleNormal}}
		if !slices.Equal(g.Members, want) {
			t.Errorf("members %+v, want %+v", g.Members, want)
		}

		if err := e.call(subject.GroupJoin, api.GroupRequest{UserID: u[1], GroupID: gid + 1000}, nil); !errors.Is(err, api.ErrNoSuchGroup) {
			t.Errorf("join unknown group: %v", err)
		}
		if err := e.call(subject.GroupLeave, api.GroupRequest{UserID: u[2], GroupID: gid}, nil); !errors.Is(err, api.ErrNotMember) {
			t.Errorf("leave by non-member: %v", err)
		}
		if err := e.call(subject.GroupLeave, api.GroupRequest{UserID: u[2], GroupID: gid + 1000}, nil); !errors.Is(err, api.ErrNoSuchGroup) {
			t.Errorf("leave unknown group: %v", err)
		}
		if err := e.call(subject.GroupMembers, api.GroupRequest{UserID: u[2], GroupID: gid}, nil); !errors.Is(err, api.ErrNotMember) {
			t.Errorf("members by non-member: %v", err)
		}
		if err := e.call(subject.GroupMembers, api.GroupRequest{UserID: u[2], GroupID: gid + 1000}, nil); !errors.Is(err, api.ErrNoSuchGroup) {
			t.Errorf("members of unknown group: %v", err)
		}

		// The group empties and stays; its next member is its creator.
		e.leave(t, gid, u[0])
		e.leave(t, gid, u[1])
		if err := e.call(subject.GroupLeave, api.GroupRequest{UserID: u[1], GroupID: gid}, nil); !errors.Is(err, api.ErrNotMember) {
			t.Errorf("leave twice: %v", err)
		}
		e.join(t, gid, u[3])
		e.join(t, gid, u[2])
		g = e.members(t, gid, u[2])
		want = []api.Member{{ID: u[2], Name: "u2", Role: api.RoleNormal}, {ID: u[3], Name: "u3", Role: api.RoleCreator}}
		if !slices.Equal(g.Members, want) {
			t.Errorf("members of the refilled group %+v, want %+v", g.Members, want)
		}
	})
}

// TestCreatorLeaves checks that the longest-standing member succeeds a
// creator who leaves, even when a later joiner has a lower id.
func TestCreatorLeaves(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		u := e.users(t, "u", 4) // ids ascending
		gid := e.create(t, u[0], "g", "")
		e.join(t, gid, u[3])
		// u[2] and u[1] join in later milliseconds than u[3].
		mark := time.Now().UnixMilli()
		eventually.NoError(t, time.Second, func() error {
			if got := time.Now().UnixMilli(); got <= mark {
				return fmt.Errorf("still waiting for the next millisecond: got %v, want > mark", got)
			}
			return nil
		})
		e.join(t, gid, u[2], u[1])

		e.leave(t, gid, u[0])
		roles := func() map[int64]string {
			out := map[int64]string{}
			for _, m := range e.members(t, gid, u[1]).Members {
				out[m.ID] = m.Role
			}
			return out
		}
		want := map[int64]string{u[1]: api.RoleNormal, u[2]: api.RoleNormal, u[3]: api.RoleCreator}
		if got := roles(); !maps.Equal(got, want) {
			t.Errorf("after the creator left: %v, want %v", got, want)
		}
		// The new creator can do what any member can, and leave in turn.
		e.mustSend(t, u[3], gid, "still here")
		e.leave(t, gid, u[3])
		got := roles()
		if got[u[3]] != "" || len(got) != 2 || (got[u[1]] == api.RoleCreator) == (got[u[2]] == api.RoleCreator) {
			t.Errorf("after the second creator left: %v", got)
		}
	})
}

func TestGroupFull(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		creator := e.register(t, "creator")
		gid := e.create(t, creator, "big", "")
		// Fixture: fill the group to the limit directly in the database
		// (MaxGroupMembers joins would only make the test slow).
		err := db.InTx(context.Background(), func(tx *sql.Tx) error {
			for lo := 1; lo < api.MaxGroupMembers; lo += 500 {
				hi := min(lo+500, api.MaxGroupMembers)
				var q strings.Builder
				q.WriteString("INSERT INTO group_members (group_id, user_id, role, joined_at) VALUES ")
				var args []any
				for i := lo; i < hi; i++ {
					if i > lo {
						q.WriteByte(',')
					}
					q.WriteString("(?, ?, 'normal', 0)")
					args = append(args, gid, int64(1_000_000+i))
				}
				if _, err := tx.Exec(q.String(), args...); err != nil {
					return err
				}
			}
			_, err := tx.Exec("UPDATE chat_groups SET version = version + 1, members = ? WHERE id = ?", api.MaxGroupMembers, gid)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		late := e.register(t, "late")
		err = e.call(subject.GroupJoin, api.GroupRequest{UserID: late, GroupID: gid}, nil)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeBadRequest || ae.Message != "group is full" {
			t.Errorf("join a full group: %v", err)
		}
		e.join(t, gid, creator) // a member joining again is not refused
		e.leave(t, gid, 1_000_001)
		e.join(t, gid, late) // room again
	})
}

func TestMineAndMembers(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		u := e.users(t, "user", 4)
		// u[1] comes online: a gateway with a lease, and a session on it.
		e.must(t, subject.UserGatewayBeat, api.GatewayBeat{GatewayID: "gw-1", TTLMillis: time.Minute.Milliseconds()}, nil)
		e.must(t, subject.UserLogin, api.LoginRequest{UserID: u[1], Password: password, GatewayID: "gw-1", SessionID: "s-1"}, nil)

		a := e.create(t, u[0], "群 a 😀", "first")
		b := e.create(t, u[1], "b", "second")
		c := e.create(t, u[2], "c", "without u[0]")
		e.join(t, a, u[1], u[2])
		e.join(t, b, u[0])
		e.join(t, c, u[3])

		var mine api.GroupMineResponse
		e.must(t, subject.GroupMine, api.GroupMineRequest{UserID: u[0]}, &mine)
		want := []api.Group{
			{ID: a, Name: "群 a 😀", Desc: "first", Members: []api.Member{
				{ID: u[0], Name: "user0", Role: api.RoleCreator},
				{ID: u[1], Name: "user1", Role: api.RoleNormal, Online: true},
				{ID: u[2], Name: "user2", Role: api.RoleNormal},
			}},
			{ID: b, Name: "b", Desc: "second", Members: []api.Member{
				{ID: u[0], Name: "user0", Role: api.RoleNormal},
				{ID: u[1], Name: "user1", Role: api.RoleCreator, Online: true},
			}},
		}
		if !groupsEqual(mine.Groups, want) {
			t.Errorf("mine:\n got %+v\nwant %+v", mine.Groups, want)
		}
		got := e.members(t, a, u[2])
		if !groupsEqual([]api.Group{got}, want[:1]) {
			t.Errorf("members:\n got %+v\nwant %+v", got, want[0])
		}

		// A user in no group gets an empty list, not null.
		loner := e.register(t, "loner")
		m, err := e.nc.Request(subject.GroupMine, []byte(fmt.Sprintf(`{"user_id":%d}`, loner)), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data) != `{"groups":[]}` {
			t.Errorf("mine of a loner: %s", m.Data)
		}
	})
}

func groupsEqual(a, b []api.Group) bool {
	return slices.EqualFunc(a, b, func(x, y api.Group) bool {
		return x.ID == y.ID && x.Name == y.Name && x.Desc == y.Desc && slices.Equal(x.Members, y.Members)
	})
}

// TestSend checks that every other member gets a group chat exactly once,
// pushed and in their inbox, and the sender does not; non-members cannot
// send.
func TestSend(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		u := e.users(t, "u", 5)
		gid := e.create(t, u[0], "g", "")
		e.join(t, gid, u[1], u[2], u[3])
		p := watch(t, e.nc, u...)

		body := json.RawMessage(`{"text":"<hi> & 你好 😀","group":1}`)
		var resp api.StoreResponse
		e.must(t, subject.GroupSend, api.GroupSendRequest{UserID: u[1], GroupID: gid, Body: body}, &resp)
		if resp.MID == "" || resp.Duplicate {
			t.Fatalf("send: %+v", resp)
		}
		for _, r := range []int64{u[0], u[2], u[3]} {
			in := e.inbox(t, r)
			if len(in) != 1 || in[0].MID != resp.MID || in[0].From != u[1] || string(in[0].Body) != string(body) {
				t.Errorf("inbox of %d: %+v", r, in)
			}
		}
		eventually.NoError(t, 5*time.Second, func() error {
			if got := p.total(); got < 3 {
				return fmt.Errorf("still waiting for 3 pushes: got %v, want >= 3", got)
			}
			return nil
		})
		for _, r := range []int64{u[0], u[2], u[3]} {
			got := p.of(r)
			if len(got) != 1 || got[0].MID != resp.MID || got[0].Seq != 1 || string(got[0].Body) != string(body) {
				t.Errorf("pushes to %d: %+v", r, got)
			}
		}
		if n := e.lastSeq(t, u[1]); n != 0 || len(p.of(u[1])) != 0 {
			t.Errorf("the sender got their own message: inbox %d, pushes %v", n, p.of(u[1]))
		}

		if _, err := e.send(u[4], gid, "", "intruder"); !errors.Is(err, api.ErrNotMember) {
			t.Errorf("non-member send: %v", err)
		}
		if _, err := e.send(u[0], gid+1000, "", "nowhere"); !errors.Is(err, api.ErrNoSuchGroup) {
			t.Errorf("send to unknown group: %v", err)
		}

		// A member alone in the group gets a mid; nothing is stored.
		solo := e.create(t, u[4], "solo", "")
		r1, err := e.send(u[4], solo, "", "echo")
		if err != nil || r1.MID == "" {
			t.Fatalf("send alone: %+v, %v", r1, err)
		}
		if n := e.lastSeq(t, u[4]); n != 0 {
			t.Errorf("alone: inbox has %d entries", n)
		}
		// Nothing else arrives: a last message to everyone marks the end.
		end := e.mustSend(t, u[0], gid, "end")
		eventually.NoError(t, 5*time.Second, func() error {
			if got := len(p.of(u[3])); got != 2 {
				return fmt.Errorf("still waiting for the end marker: got %v, want == 2", got)
			}
			return nil
		})
		if p.total() != 6 {
			t.Errorf("%d pushes, want 6", p.total())
		}
		if got := p.of(u[3]); got[1].MID != end || got[1].Seq != 2 {
			t.Errorf("pushes to %d: %+v", u[3], got)
		}
	})
}

// TestSendCID checks that a retried group send with the same cid stores
// nothing more and answers the first mid.
func TestSendCID(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		u := e.users(t, "u", 3)
		gid := e.create(t, u[0], "g", "")
		e.join(t, gid, u[1], u[2])
		first, err := e.send(u[0], gid, "c-1", "once")
		if err != nil || first.Duplicate {
			t.Fatalf("first: %+v, %v", first, err)
		}
		again, err := e.send(u[0], gid, "c-1", "once")
		if err != nil || !again.Duplicate || again.MID != first.MID {
			t.Fatalf("retry: %+v, %v (first %+v)", again, err, first)
		}
		// Another sender may use the same cid.
		other, err := e.send(u[1], gid, "c-1", "mine")
		if err != nil || other.Duplicate || other.MID == first.MID {
			t.Fatalf("same cid, other sender: %+v, %v", other, err)
		}
		if got := mids(e.inbox(t, u[2])); !slices.Equal(got, []string{first.MID, other.MID}) {
			t.Errorf("inbox of %d: %v", u[2], got)
		}
	})
}

// TestLeaveJoinNeverStale checks the member cache: a member whose leave was
// acknowledged receives nothing sent afterwards, and a joiner everything sent
// after the join, through any instance - including a second instance that
// had the group cached at an older version.
func TestLeaveJoinNeverStale(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		a := e.grp
		b := e.startGroup(t, testConfig())
		u := e.users(t, "u", 4)
		sender, stay, mover := u[0], u[1], u[2]
		gid := e.create(t, sender, "g", "")
		e.join(t, gid, stay, mover)

		ctx := context.Background()
		direct := func(s *Service, text string) string {
			t.Helper()
			resp, err := s.send(ctx, &api.GroupSendRequest{UserID: sender, GroupID: gid, Body: textBody(text)})
			if err != nil {
				t.Fatalf("send %q: %v", text, err)
			}
			return resp.MID
		}
		// Both instances cache the group at its current version.
		direct(a, "warm a")
		direct(b, "warm b")
		v, err := a.store.Version(ctx, gid)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range []*Service{a, b} {
			if _, ok := s.cache.get(gid, v); !ok {
				t.Fatalf("instance %d has not cached the group", i)
			}
		}
		moverSeq := e.lastSeq(t, mover)

		// Leave through NATS (either instance), then send through each
		// instance directly: both must notice the new version.
		e.leave(t, gid, mover)
		reloads := b.cacheStats().Reloads
		direct(b, "after leave, b")
		direct(a, "after leave, a")
		if b.cacheStats().Reloads != reloads+1 {
			t.Errorf("instance b did not reload the members after the leave")
		}
		if got := e.lastSeq(t, mover); got != moverSeq {
			t.Fatalf("the member who left got %d messages sent after the leave", got-moverSeq)
		}

		// Join: the next sends reach the joiner, through each instance.
		e.join(t, gid, mover)
		want := []string{direct(b, "after join, b"), direct(a, "after join, a")}
		in := e.inbox(t, mover)
		if got := mids(in[moverSeq:]); !slices.Equal(got, want) {
			t.Fatalf("the joiner got %v, want %v", got, want)
		}

		// Many rounds through NATS; the queue group spreads them over both
		// instances, whose caches keep changing under them.
		seen := map[string]bool{}
		stayBefore := e.lastSeq(t, stay)
		sent := 0
		for i := range 20 {
			before := e.lastSeq(t, mover)
			e.leave(t, gid, mover)
			e.mustSend(t, sender, gid, fmt.Sprintf("out %d", i))
			if got := e.lastSeq(t, mover); got != before {
				t.Fatalf("round %d: the member who left got a message", i)
			}
			e.join(t, gid, mover)
			mid := e.mustSend(t, sender, gid, fmt.Sprintf("in %d", i))
			sent += 2
			in := e.inbox(t, mover)
			if len(in) != int(before)+1 || in[len(in)-1].MID != mid || seen[mid] {
				t.Fatalf("round %d: the joiner's inbox ends %v, want %s once", i, mids(in[before:]), mid)
			}
			seen[mid] = true
		}
		if got := e.lastSeq(t, stay); got != stayBefore+int64(sent) {
			t.Errorf("a member who stayed got %d of %d", got-stayBefore, sent)
		}
		// With the membership unchanged, the cache answers.
		hits := b.cacheStats().Hits
		direct(b, "cached 1")
		direct(b, "cached 2")
		if got := b.cacheStats().Hits - hits; got < 1 {
			t.Errorf("%d cache hits for two sends with the membership unchanged", got)
		}
	})
}

// TestConcurrentSends has several members send at once through two
// instances: every member's inbox holds every message not their own, once,
// and any two members have their common messages in the same order.
func TestConcurrentSends(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		e.startGroup(t, testConfig())
		const members, senders, perSender = 8, 5, 20
		u := e.users(t, "u", members)
		gid := e.create(t, u[0], "g", "")
		e.join(t, gid, u[1:]...)

		var wg sync.WaitGroup
		var mu sync.Mutex
		sentBy := map[string]int64{}
		for s := range senders {
			wg.Go(func() {
				for i := range perSender {
					resp, err := e.send(u[s], gid, fmt.Sprintf("c%d", i), fmt.Sprintf("%d/%d", s, i))
					if err != nil {
						t.Errorf("sender %d message %d: %v", s, i, err)
						return
					}
					mu.Lock()
					sentBy[resp.MID] = u[s]
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		orders := make([][]string, members)
		for i, m := range u {
			in := e.inbox(t, m)
			orders[i] = mids(in)
			got := map[string]bool{}
			for _, x := range in {
				if got[x.MID] || sentBy[x.MID] == m || sentBy[x.MID] != x.From {
					t.Errorf("member %d: entry %+v is a duplicate, their own, or from the wrong sender", m, x)
				}
				got[x.MID] = true
			}
			want := 0
			for _, from := range sentBy {
				if from != m {
					want++
				}
			}
			if len(in) != want {
				t.Errorf("member %d has %d entries, want %d", m, len(in), want)
			}
		}
		for i := range orders {
			for j := i + 1; j < len(orders); j++ {
				x, y := common(orders[i], orders[j]), common(orders[j], orders[i])
				if !slices.Equal(x, y) {
					t.Fatalf("members %d and %d have their common messages in different orders:\n%v\n%v", u[i], u[j], x, y)
				}
			}
		}
	})
}

// common returns the elements of a that are also in b, in a's order.
func common(a, b []string) []string {
	in := map[string]bool{}
	for _, s := range b {
		in[s] = true
	}
	var out []string
	for _, s := range a {
		if in[s] {
			out = append(out, s)
		}
	}
	return out
}

// bigGroup creates a group of n members (the first one its creator) and
// returns its id and the members. The members need not be registered users:
// the group service does not consult the user service to join or send.
func (e *env) bigGroup(t testing.TB, n int) (int64, []int64) {
	t.Helper()
	creator := e.register(t, "creator")
	gid := e.create(t, creator, "big", "")
	ids := []int64{creator}
	for i := 1; i < n; i++ {
		ids = append(ids, 1_000_000+int64(i))
	}
	// Join from a few goroutines; joins of one group serialize in the
	// database anyway.
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 1 + w; i < n; i += 8 {
				if err := e.call(subject.GroupJoin, api.GroupRequest{UserID: ids[i], GroupID: gid}, nil); err != nil {
					t.Errorf("join %d: %v", ids[i], err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return gid, ids
}

// TestBigGroup sends one message to a 2,000-member group: all 1,999 others
// get it pushed and stored, once.
func TestBigGroup(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		const n = 2000
		gid, ids := e.bigGroup(t, n)
		p := watch(t, e.nc, ids...)
		sender := ids[n/2]
		mid := e.mustSend(t, sender, gid, "hello, everyone")
		eventually.NoError(t, 10*time.Second, func() error {
			if got := p.total(); got < n-1 {
				return fmt.Errorf("still waiting for 1999 pushes: got %v, want >= n-1", got)
			}
			return nil
		})
		for _, id := range ids {
			got := p.of(id)
			switch {
			case id == sender && len(got) != 0:
				t.Errorf("the sender got %d pushes", len(got))
			case id != sender && (len(got) != 1 || got[0].MID != mid || got[0].Seq != 1):
				t.Errorf("pushes to %d: %+v", id, got)
			}
		}
		for _, id := range []int64{ids[0], ids[1], ids[n-1]} {
			if in := e.inbox(t, id); len(in) != 1 || in[0].MID != mid {
				t.Errorf("inbox of %d: %+v", id, in)
			}
		}
		if n := e.lastSeq(t, sender); n != 0 {
			t.Errorf("the sender's inbox has %d entries", n)
		}
		var members api.GroupMembersResponse
		e.must(t, subject.GroupMembers, api.GroupRequest{UserID: ids[0], GroupID: gid}, &members)
		if len(members.Group.Members) != n {
			t.Errorf("members lists %d", len(members.Group.Members))
		}
	})
}

// TestBadRequests sends malformed and out-of-range requests to every
// endpoint: each is answered bad_request, and the service keeps serving.
func TestBadRequests(t *testing.T) {
	big := `{"user_id":1,"group_id":1,"body":{"t":"` + strings.Repeat("x", api.MaxBodyLen) + `"}}`
	longCID := `{"user_id":1,"group_id":1,"cid":"` + strings.Repeat("c", api.MaxCIDLen+1) + `","body":{}}`
	cases := []struct {
		name, subject, payload string
	}{
		{"create malformed", subject.GroupCreate, `{"user_id":1,`},
		{"create not an object", subject.GroupCreate, `[1]`},
		{"create wrong type", subject.GroupCreate, `{"user_id":"1","name":"g"}`},
		{"create user 0", subject.GroupCreate, `{"user_id":0,"name":"g"}`},
		{"create no name", subject.GroupCreate, `{"user_id":1}`},
		{"create name too long", subject.GroupCreate, `{"user_id":1,"name":"` + strings.Repeat("a", api.MaxGroupName+1) + `"}`},
		{"create desc too long", subject.GroupCreate, `{"user_id":1,"name":"g","desc":"` + strings.Repeat("a", api.MaxGroupDesc+1) + `"}`},
		{"join malformed", subject.GroupJoin, `{"user_id"`},
		{"join group 0", subject.GroupJoin, `{"user_id":1,"group_id":0}`},
		{"join negative user", subject.GroupJoin, `{"user_id":-1,"group_id":1}`},
		{"leave wrong type", subject.GroupLeave, `{"user_id":1,"group_id":"1"}`},
		{"leave user 0", subject.GroupLeave, `{"group_id":1}`},
		{"mine malformed", subject.GroupMine, `nope`},
		{"mine user 0", subject.GroupMine, `{}`},
		{"members group 0", subject.GroupMembers, `{"user_id":1}`},
		{"send malformed", subject.GroupSend, `{"user_id":1,"group_id":1,"body":`},
		{"send no body", subject.GroupSend, `{"user_id":1,"group_id":1}`},
		{"send body null", subject.GroupSend, `{"user_id":1,"group_id":1,"body":null}`},
		{"send body a string", subject.GroupSend, `{"user_id":1,"group_id":1,"body":"hi"}`},
		{"send body an array", subject.GroupSend, `{"user_id":1,"group_id":1,"body":[{}]}`},
		{"send body too long", subject.GroupSend, big},
		{"send body not UTF-8", subject.GroupSend, "{\"user_id\":1,\"group_id\":1,\"body\":{\"t\":\"\xff\"}}"},
		{"send cid too long", subject.GroupSend, longCID},
		{"send group 0", subject.GroupSend, `{"user_id":1,"group_id":0,"body":{}}`},
	}
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				natstest.CheckRefused(t, e.nc, tc.subject, tc.payload, api.ErrBadRequest)
			})
		}
		// Still serving.
		u := e.users(t, "u", 2)
		gid := e.create(t, u[0], "g", "")
		e.join(t, gid, u[1])
		e.mustSend(t, u[0], gid, "fine")
	})
}

// TestMicroInfo checks the service and its endpoints are discoverable, with
// descriptions.
func TestMicroInfo(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	natstest.CheckEndpoints(t, e.nc, subject.GroupService, subject.GroupCreate, subject.GroupJoin, subject.GroupLeave,
		subject.GroupMine, subject.GroupMembers, subject.GroupSend)

	// The send endpoint reports the member cache in $SRV.STATS.
	u := e.users(t, "u", 2)
	gid := e.create(t, u[0], "g", "")
	e.join(t, gid, u[1])
	e.mustSend(t, u[0], gid, "one")
	e.mustSend(t, u[0], gid, "two")
	stats := natstest.Stats(t, e.nc, subject.GroupService, 1)[0]
	for _, ep := range stats.Endpoints {
		if ep.Name != epSend {
			continue
		}
		var cs CacheStats
		if err := json.Unmarshal(ep.Data, &cs); err != nil {
			t.Fatal(err)
		}
		if cs != (CacheStats{Groups: 1, Hits: 1, Reloads: 1}) {
			t.Errorf("cache stats %+v", cs)
		}
	}
}

// TestStopAnswersBusy covers the window in Stop after the runners closed
// while drained subscriptions may still deliver requests.
func TestStopAnswersBusy(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	e.grp.runner.Close()
	e.grp.sendRunner.Close()
	for _, subj := range []string{subject.GroupMine, subject.GroupSend} {
		err := e.call(subj, api.GroupSendRequest{UserID: 1, GroupID: 1, Body: textBody("x")}, nil)
		if !errors.Is(err, api.ErrBusy) {
			t.Errorf("%s: got %v, want busy", subj, err)
		}
	}
	if err := e.grp.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := e.grp.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
}

// TestOfflineUnavailable checks that a send the offline service cannot take
// is answered busy, so the client retries with the same cid.
func TestOfflineUnavailable(t *testing.T) {
	ns := natstest.Run(t)
	db := dbtest.SQLite(t)
	e := &env{ns: ns, db: db, nc: natstest.Connect(t, ns)}
	e.grp = e.startGroup(t, testConfig())
	// No user or offline service: create and join need neither.
	gid := e.create(t, 1, "g", "")
	e.join(t, gid, 2)
	if _, err := e.send(1, gid, "c", "x"); !errors.Is(err, api.ErrBusy) {
		t.Errorf("send without an offline service: %v, want busy", err)
	}
	if err := e.call(subject.GroupMembers, api.GroupRequest{UserID: 1, GroupID: gid}, nil); !errors.Is(err, api.ErrBusy) {
		t.Errorf("members without a user service: %v, want busy", err)
	}
}
