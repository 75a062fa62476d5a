package user_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/services/user"
	"github.com/natter-chat/natter/services/user/internal/account"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/logtest"
	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
)

// env is a user service on a test NATS server and database, and a client
// connection to call it with.
type env struct {
	ns    *server.Server
	db    *sqldb.DB
	nc    *nats.Conn // the client's connection
	svc   *user.Service
	store *account.Store // to look at sessions directly
}

func testConfig(policy string) user.Config {
	return user.Config{
		BcryptCost:     bcrypt.MinCost,
		LoginPolicy:    policy,
		Concurrency:    8,
		RequestTimeout: 10 * time.Second,
	}
}

func newEnv(t *testing.T, db *sqldb.DB, cfg user.Config) *env {
	t.Helper()
	ns := natstest.Run(t)
	e := &env{ns: ns, db: db, nc: natstest.Connect(t, ns), store: account.New(db)}
	e.svc = e.start(t, cfg)
	return e
}

// start runs another service instance on its own connection.
func (e *env) start(t *testing.T, cfg user.Config) *user.Service {
	t.Helper()
	return natstest.StartService(t, e.ns, user.Start, e.db, cfg, logtest.New(t, slog.LevelDebug))
}

func (e *env) call(t *testing.T, subj string, req, resp any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return api.Call(ctx, e.nc, subj, req, resp)
}

func (e *env) register(t *testing.T, name, password string) int64 {
	t.Helper()
	var resp api.RegisterResponse
	if err := e.call(t, subject.UserRegister, api.RegisterRequest{Name: name, Password: password}, &resp); err != nil {
		t.Fatalf("register %q: %v", name, err)
	}
	if resp.ID <= 0 {
		t.Fatalf("register %q: id %d", name, resp.ID)
	}
	return resp.ID
}

func (e *env) beat(t *testing.T, gatewayID string, ttl time.Duration) {
	t.Helper()
	if err := e.call(t, subject.UserGatewayBeat, api.GatewayBeat{GatewayID: gatewayID, TTLMillis: ttl.Milliseconds()}, nil); err != nil {
		t.Fatalf("beat %s: %v", gatewayID, err)
	}
}

func (e *env) login(t *testing.T, uid int64, password, gatewayID, sessionID string) (api.LoginResponse, error) {
	t.Helper()
	var resp api.LoginResponse
	err := e.call(t, subject.UserLogin, api.LoginRequest{
		UserID: uid, Password: password, GatewayID: gatewayID, SessionID: sessionID}, &resp)
	return resp, err
}

func (e *env) online(t *testing.T, ids ...int64) []int64 {
	t.Helper()
	got, err := e.store.Online(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func (e *env) sessionRows(t *testing.T, uid int64) int {
	t.Helper()
	var n int
	if err := e.db.ReadQueryRow(context.Background(), `SELECT COUNT(*) FROM sessions WHERE user_id = ?`, uid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*user.Config)
		flag   string // what the error names; "": valid
	}{
		{"valid", func(*user.Config) {}, ""},
		{"empty policy means kick", func(c *user.Config) { c.LoginPolicy = "" }, ""},
		{"reject", func(c *user.Config) { c.LoginPolicy = user.PolicyReject }, ""},
		{"unknown policy", func(c *user.Config) { c.LoginPolicy = "ignore" }, `--login-policy "ignore"`},
		{"cost too low", func(c *user.Config) { c.BcryptCost = bcrypt.MinCost - 1 }, "--bcrypt-cost 3"},
		{"cost too high", func(c *user.Config) { c.BcryptCost = bcrypt.MaxCost + 1 }, "--bcrypt-cost 32"},
		{"no concurrency", func(c *user.Config) { c.Concurrency = 0 }, "--db-conns"},
		{"no timeout", func(c *user.Config) { c.RequestTimeout = 0 }, "--request-timeout 0s"},
		{"short resume ttl", func(c *user.Config) { c.ResumeTTL = time.Second }, "--resume-ttl 1s"},
		{"default throttle", func(c *user.Config) { c.Throttle = user.DefaultThrottle() }, ""},
		{"throttle window shorter than its lock", func(c *user.Config) {
			c.Throttle = user.DefaultThrottle()
			c.Throttle.Window = time.Minute
		}, "--login-failure-window 1m0s"},
		{"negative throttle", func(c *user.Config) { c.Throttle.AddressFailures = -1 }, "--login-address-failures -1"},
	}
	all := testConfig(user.PolicyKick)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(user.PolicyKick)
			tt.modify(&cfg)
			err := cfg.Validate()
			if (err == nil) != (tt.flag == "") || err != nil && !strings.Contains(err.Error(), tt.flag) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tt.flag)
			}
		})
	}
	// Every problem at once is reported at once.
	all.LoginPolicy, all.BcryptCost, all.Concurrency, all.RequestTimeout, all.ResumeTTL = "ignore", 0, 0, 0, time.Second
	all.Throttle = user.DefaultThrottle()
	all.Throttle.Window = time.Minute
	err := all.Validate()
	for _, flag := range []string{"--login-policy", "--bcrypt-cost", "--db-conns", "--request-timeout", "--resume-ttl", "--login-failure-window"} {
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("all bad: Validate() = %v, want it to name %s", err, flag)
		}
	}
}

func TestRegisterLookup(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig(user.PolicyKick))
		names := []string{
			"alice",
			"張偉",
			"𠮷野家",           // a 4-byte CJK character
			"😀🎉👩‍👩‍👧 party", // emoji, with a ZWJ sequence
			"Zoë 🚀 李",
			strings.Repeat("字", user.MaxNameRunes),
			strings.Repeat("😀", user.MaxNameRunes),
		}
		var want []api.User
		ids := []int64{999999}
		for _, name := range names {
			id := e.register(t, name, "pw")
			want = append(want, api.User{ID: id, Name: name})
			ids = append(ids, id)
		}
		var resp api.LookupResponse
		if err := e.call(t, subject.UserLookup, api.LookupRequest{IDs: ids}, &resp); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(resp.Users, want) {
			t.Errorf("lookup: got %+v, want %+v", resp.Users, want)
		}
		for i := range min(len(resp.Users), len(want)) {
			if got := []byte(resp.Users[i].Name); string(got) != want[i].Name {
				t.Errorf("name %d: bytes % x, want % x", i, got, []byte(want[i].Name))
			}
		}
	})
}

func TestLookupLimits(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t), testConfig(user.PolicyKick))
	id := e.register(t, "alice", "pw")
	tests := []struct {
		name string
		ids  []int64
		want []api.User
		err  error
	}{
		{"none", nil, nil, api.ErrBadRequest},
		{"too many", make([]int64, user.MaxLookupIDs+1), nil, api.ErrBadRequest},
		{"max", append(make([]int64, user.MaxLookupIDs-1), id), []api.User{{ID: id, Name: "alice"}}, nil},
		{"unknown only", []int64{id + 1, -1}, []api.User{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp api.LookupResponse
			err := e.call(t, subject.UserLookup, api.LookupRequest{IDs: tt.ids}, &resp)
			if !errors.Is(err, tt.err) {
				t.Fatalf("got error %v, want %v", err, tt.err)
			}
			if err == nil && !slices.Equal(resp.Users, tt.want) {
				t.Errorf("got %+v, want %+v", resp.Users, tt.want)
			}
		})
	}
}

func TestRegisterValidation(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t), testConfig(user.PolicyKick))
	tests := []struct {
		name, user, password string
		err                  error
	}{
		{"50 characters", strings.Repeat("名", 50), "pw", nil},
		{"51 characters", strings.Repeat("名", 51), "pw", api.ErrBadRequest},
		{"51 ascii", strings.Repeat("a", 51), "pw", api.ErrBadRequest},
		{"empty name", "", "pw", api.ErrBadRequest},
		{"control character", "bob\x07", "pw", api.ErrBadRequest},
		{"newline", "bob\nsmith", "pw", api.ErrBadRequest},
		{"leading space", " bob", "pw", api.ErrBadRequest},
		{"trailing space", "bob ", "pw", api.ErrBadRequest},
		{"inner space", "bob smith", "pw", nil},
		{"empty password", "carol", "", api.ErrBadRequest},
		{"72-byte password", "dave", strings.Repeat("p", 72), nil},
		{"73-byte password", "erin", strings.Repeat("p", 73), api.ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.call(t, subject.UserRegister, api.RegisterRequest{Name: tt.user, Password: tt.password}, nil)
			if !errors.Is(err, tt.err) {
				t.Errorf("register %q: got %v, want %v", tt.user, err, tt.err)
			}
		})
	}
}

func TestRegisterNameTaken(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig(user.PolicyKick))
		e.register(t, "alice", "pw")
		e.register(t, "😀", "pw")
		tests := []struct {
			name string
			err  error
		}{
			{"alice", api.ErrNameTaken},
			{"😀", api.ErrNameTaken},
			// One name whatever its case, width or invisible characters.
			{"Alice", api.ErrNameTaken},
			{"ALICE", api.ErrNameTaken},
			{"ａｌｉｃｅ", api.ErrNameTaken},
			{"al\u200Bice", api.ErrNameTaken},
			{"ali\u00ADce", api.ErrNameTaken},
			{"😀\uFE0F", api.ErrNameTaken},
			// Bidirectional overrides and controls are refused.
			{"alice\u202Egnp", api.ErrBadRequest},
			{"\u2067alice", api.ErrBadRequest},
			{"😀😀", nil},
			{"alice2", nil},
			{"аlice", nil}, // Cyrillic а: another letter
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := e.call(t, subject.UserRegister, api.RegisterRequest{Name: tt.name, Password: "pw"}, nil)
				if !errors.Is(err, tt.err) {
					t.Errorf("register %q: got %v, want %v", tt.name, err, tt.err)
				}
			})
		}
	})
}

func TestLogin(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig(user.PolicyKick))
		uid := e.register(t, "alice", "secret")
		tests := []struct {
			name     string
			uid      int64
			password string
			gw, sess string
			err      error
		}{
			{"ok", uid, "secret", "gw", "s1", nil},
			{"wrong password", uid, "Secret", "gw", "s2", api.ErrBadLogin},
			{"empty password", uid, "", "gw", "s2", api.ErrBadLogin},
			{"password with extra bytes", uid, "secret" + strings.Repeat("x", 72), "gw", "s2", api.ErrBadLogin},
			{"unknown id", uid + 1000, "secret", "gw", "s2", api.ErrBadLogin},
			{"no gateway id", uid, "secret", "", "s2", api.ErrBadRequest},
			{"no session id", uid, "secret", "gw", "", api.ErrBadRequest},
			{"session id too long", uid, "secret", "gw", strings.Repeat("s", user.MaxIDLen+1), api.ErrBadRequest},
			{"longest ids", uid, "secret", strings.Repeat("g", user.MaxIDLen), strings.Repeat("s", user.MaxIDLen), nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp, err := e.login(t, tt.uid, tt.password, tt.gw, tt.sess)
				if !errors.Is(err, tt.err) {
					t.Fatalf("login: got %v, want %v", err, tt.err)
				}
				if err == nil && resp.Name != "alice" {
					t.Errorf("login: name %q, want alice", resp.Name)
				}
			})
		}
	})
}

func TestLoginKick(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig(user.PolicyKick))
		uid := e.register(t, "alice", "pw")
		e.beat(t, "gw-a", time.Minute)
		e.beat(t, "gw-b", time.Minute)
		sub, err := e.nc.SubscribeSync(subject.User(uid))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.nc.Flush(); err != nil {
			t.Fatal(err)
		}

		first, err := e.login(t, uid, "pw", "gw-a", "s1")
		if err != nil || first.Replaced != "" {
			t.Fatalf("first login: %+v, %v", first, err)
		}
		second, err := e.login(t, uid, "pw", "gw-b", "s2")
		if err != nil {
			t.Fatalf("second login: %v", err)
		}
		if second.Replaced != "s1" {
			t.Errorf("second login replaced %q, want s1", second.Replaced)
		}
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no kick: %v", err)
		}
		if kind := msg.Header.Get(subject.KindHeader); kind != subject.KindKick {
			t.Errorf("kick has %s %q, want %q", subject.KindHeader, kind, subject.KindKick)
		}
		var notice api.KickNotice
		if err := json.Unmarshal(msg.Data, &notice); err != nil || notice.SessionID != "s1" {
			t.Errorf("kick notice %s (%v), want session s1", msg.Data, err)
		}
		if n, _, _ := sub.Pending(); n != 0 {
			t.Errorf("%d more messages after the kick", n)
		}

		// The kicked session logging out does not end its successor.
		if err := e.call(t, subject.UserLogouts, api.LogoutsRequest{Sessions: []api.SessionRef{{UserID: uid, SessionID: "s1"}}}, nil); err != nil {
			t.Fatal(err)
		}
		if got := e.online(t, uid); !slices.Equal(got, []int64{uid}) {
			t.Fatalf("after the replaced session's logout: online %v, want [%d]", got, uid)
		}
		if err := e.call(t, subject.UserLogouts, api.LogoutsRequest{Sessions: []api.SessionRef{{UserID: uid, SessionID: "s2"}}}, nil); err != nil {
			t.Fatal(err)
		}
		if got := e.online(t, uid); len(got) != 0 {
			t.Fatalf("after logout: online %v, want none", got)
		}
	})
}

func TestLoginReject(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig(user.PolicyReject))
		uid := e.register(t, "alice", "pw")
		e.beat(t, "gw-a", 0) // clamped to the shortest lease, one second
		e.beat(t, "gw-b", time.Minute)
		if _, err := e.login(t, uid, "pw", "gw-a", "s1"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.login(t, uid, "pw", "gw-b", "s2"); !errors.Is(err, api.ErrSessionLive) {
			t.Fatalf("second login while the first is live: got %v, want %v", err, api.ErrSessionLive)
		}
		// The live session logging in again (a retried request) is accepted.
		if resp, err := e.login(t, uid, "pw", "gw-a", "s1"); err != nil || resp.Replaced != "" {
			t.Fatalf("login of the live session itself: %+v, %v", resp, err)
		}
		// Once gw-a's lease runs out, its session no longer counts.
		var resp api.LoginResponse
		eventually.NoError(t, 5*time.Second, func() error {
			var err error
			resp, err = e.login(t, uid, "pw", "gw-b", "s2")
			if err != nil && !errors.Is(err, api.ErrSessionLive) {
				t.Fatal(err)
			}
			if err != nil {
				return fmt.Errorf("still waiting for gw-a's lease to run out: %w", err)
			}
			return nil
		})
		// The login replaces s1, unless the lease sweep ended s1 first.
		if resp.Replaced != "s1" && resp.Replaced != "" {
			t.Errorf("replaced %q, want s1 (or nothing, after the lease sweep)", resp.Replaced)
		}
		if got := e.online(t, uid); !slices.Equal(got, []int64{uid}) {
			t.Errorf("online %v, want [%d]", got, uid)
		}
	})
}

func TestGatewayLeave(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig(user.PolicyReject))
		e.beat(t, "gw-a", time.Minute)
		e.beat(t, "gw-b", time.Minute)
		var ids []int64
		for i, gw := range []string{"gw-a", "gw-a", "gw-b"} {
			uid := e.register(t, fmt.Sprint("user", i), "pw")
			if _, err := e.login(t, uid, "pw", gw, "s"); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, uid)
		}
		if got := e.online(t, ids...); !slices.Equal(got, ids) {
			t.Fatalf("online %v, want %v", got, ids)
		}
		if err := e.call(t, subject.UserGatewayLeave, api.GatewayLeave{GatewayID: "gw-a"}, nil); err != nil {
			t.Fatal(err)
		}
		if got := e.online(t, ids...); !slices.Equal(got, ids[2:]) {
			t.Fatalf("after gw-a left: online %v, want %v", got, ids[2:])
		}
		// gw-a's users may log in again at once, even under policy reject.
		if _, err := e.login(t, ids[0], "pw", "gw-b", "s-again"); err != nil {
			t.Fatal(err)
		}
		if err := e.call(t, subject.UserGatewayLeave, api.GatewayLeave{}, nil); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("leave without gateway id: got %v, want %v", err, api.ErrBadRequest)
		}
	})
}

// TestConcurrentLogins races logins of one user from many callers through
// two gateways.
func TestConcurrentLogins(t *testing.T) {
	for _, policy := range []string{user.PolicyKick, user.PolicyReject} {
		t.Run(policy, func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
				e := newEnv(t, db, testConfig(policy))
				uid := e.register(t, "alice", "pw")
				e.beat(t, "gw-0", time.Minute)
				e.beat(t, "gw-1", time.Minute)
				const n = 20
				errs := make([]error, n)
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() {
						_, errs[i] = e.login(t, uid, "pw", fmt.Sprint("gw-", i%2), fmt.Sprint("s", i))
					})
				}
				wg.Wait()
				ok := 0
				for i, err := range errs {
					switch {
					case err == nil:
						ok++
					case policy == user.PolicyReject && errors.Is(err, api.ErrSessionLive):
					default:
						t.Errorf("login %d: %v", i, err)
					}
				}
				want := n
				if policy == user.PolicyReject {
					want = 1
				}
				if ok != want {
					t.Errorf("%d logins succeeded, want %d", ok, want)
				}
				if rows := e.sessionRows(t, uid); rows != 1 {
					t.Errorf("%d session rows, want 1", rows)
				}
			})
		})
	}
}

// TestQueueGroup runs two instances on one NATS: both take requests.
func TestQueueGroup(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig(user.PolicyKick))
		e.start(t, testConfig(user.PolicyKick))
		uid := e.register(t, "alice", "pw")
		const n = 50
		for range n {
			if err := e.call(t, subject.UserLookup, api.LookupRequest{IDs: []int64{uid}}, nil); err != nil {
				t.Fatal(err)
			}
		}
		// Stats are counted after each handler returns; poll until all
		// lookups are in.
		eventually.NoError(t, 5*time.Second, func() error {
			return natstest.SharedRequests(t, e.nc, subject.UserService, subject.UserLookup, 2, n)
		})
	})
}

func TestEndpointInfo(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t), testConfig(user.PolicyKick))
	natstest.CheckEndpoints(t, e.nc, subject.UserService, subject.UserRegister, subject.UserLogin, subject.UserLogouts,
		subject.UserLookup, subject.UserProfiles, subject.UserSessions, subject.UserGatewayBeat, subject.UserGatewayLeave)
}

func TestMalformedRequests(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig(user.PolicyKick))
		subjects := []string{subject.UserRegister, subject.UserLogin, subject.UserLogouts,
			subject.UserLookup, subject.UserProfiles, subject.UserSessions, subject.UserGatewayBeat, subject.UserGatewayLeave}
		bodies := []string{``, `{not json`, `[1,2]`, `{"user_id":"x","ids":"x","ttl_ms":"x","name":1}`, `null x`}
		for _, subj := range subjects {
			for _, body := range bodies {
				t.Run(subj+" "+body, func(t *testing.T) {
					natstest.CheckRefused(t, e.nc, subj, body, api.ErrBadRequest)
				})
			}
		}
		// Still serving.
		e.register(t, "alice", "pw")
	})
}

func TestNoResponseFieldsAnswerEmptyObject(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t), testConfig(user.PolicyKick))
	reqs := []struct {
		subject string
		req     any
	}{
		{subject.UserLogouts, api.LogoutsRequest{Sessions: []api.SessionRef{{UserID: 1, SessionID: "s"}}}},
		{subject.UserGatewayLeave, api.GatewayLeave{GatewayID: "gw"}},
	}
	for _, r := range reqs {
		data, _ := json.Marshal(r.req)
		msg, err := e.nc.Request(r.subject, data, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" || string(msg.Data) != "{}" {
			t.Errorf("%s: answered %q (error %q), want {}", r.subject, msg.Data, code)
		}
	}
}

func TestStop(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t), testConfig(user.PolicyKick))
	uid := e.register(t, "alice", "pw")
	// Requests in flight while the service stops are answered, busy, or find
	// nobody; none hangs and nothing races.
	const n = 100
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = e.call(t, subject.UserLookup, api.LookupRequest{IDs: []int64{uid}}, nil)
		})
	}
	if err := e.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil && !errors.Is(err, api.ErrBusy) && !errors.Is(err, api.ErrUnavailable) {
			t.Errorf("request %d: %v", i, err)
		}
	}
	err := e.call(t, subject.UserLookup, api.LookupRequest{IDs: []int64{uid}}, nil)
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("after stop: got %v, want no responders", err)
	}
}
