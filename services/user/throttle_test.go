package user_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/services/user"
	"github.com/natter-chat/natter/services/user/internal/account"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/logtest"
	"github.com/natter-chat/natter/shared/metricstest"
	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
)

// newLoggedEnv is newEnv with the service's log in logs.
func newLoggedEnv(t *testing.T, db *sqldb.DB, cfg user.Config, logs *logtest.Buffer) *env {
	t.Helper()
	ns := natstest.Run(t)
	e := &env{ns: ns, db: db, nc: natstest.Connect(t, ns), store: account.New(db)}
	e.svc = natstest.StartService(t, ns, user.Start, db, cfg,
		slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	return e
}

// loginFrom logs in with a password from the client address remote.
func (e *env) loginFrom(t *testing.T, uid int64, password, remote, sessionID string) (api.LoginResponse, error) {
	t.Helper()
	var resp api.LoginResponse
	err := e.call(t, subject.UserLogin, api.LoginRequest{
		UserID: uid, Password: password, GatewayID: "gw", SessionID: sessionID, Remote: remote}, &resp)
	return resp, err
}

// TestLoginThrottle: past the free failures an account is locked for the
// delay, doubling; a login during the lock is refused without looking at
// the password (the right one too) and says when to retry; after the lock
// the right password gets in and forgets the failures. Failures from one
// address over many accounts lock the address, not the other addresses.
// A resume is never throttled. Every failure is logged with the user id
// and the address, never the password; the metrics count them.
func TestLoginThrottle(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		reg := prometheus.NewRegistry()
		cfg := testConfig(user.PolicyKick)
		cfg.Registerer = reg
		cfg.Throttle = user.ThrottleConfig{AccountFailures: 3, AddressFailures: 5,
			Delay: 300 * time.Millisecond, MaxDelay: 2 * time.Second, Window: time.Hour}
		var logs logtest.Buffer
		e := newLoggedEnv(t, db, cfg, &logs)
		e.beat(t, "gw", time.Minute)
		alice := e.register(t, "alice", "alice-right-pw")
		const attacker, home = "203.0.113.7", "198.51.100.20"
		first, err := e.loginFrom(t, alice, "alice-right-pw", home, "s0")
		if err != nil {
			t.Fatal(err)
		}

		// Three free failures, the fourth locks the account.
		for i := range 4 {
			if _, err := e.loginFrom(t, alice, fmt.Sprintf("guess-%d", i), attacker, "s1"); !errors.Is(err, api.ErrBadLogin) {
				t.Fatalf("guess %d: %v, want a bad login", i, err)
			}
		}
		for _, pw := range []string{"guess-4", "alice-right-pw"} {
			_, err := e.loginFrom(t, alice, pw, home, "s1")
			retry, ok := api.LoginRetryAfter(err)
			if !errors.Is(err, api.ErrLoginThrottled) || !ok || retry < time.Second {
				t.Fatalf("login during the lock: %v (retry %v), want throttled", err, retry)
			}
			if !strings.HasPrefix(err.Error(), string(api.CodeLoginThrottled)+": too many failed logins; retry in ") {
				t.Errorf("the throttled answer: %q", err)
			}
		}
		// A resume is not throttled (and rotates the token).
		var resumed api.LoginResponse
		if err := e.call(t, subject.UserLogin, api.LoginRequest{UserID: alice, ResumeToken: first.ResumeToken,
			GatewayID: "gw", SessionID: "s2", Remote: attacker}, &resumed); err != nil {
			t.Fatalf("resume during the lock: %v", err)
		}
		throttledBefore := metricstest.Value(t, reg, "natter_user_logins_total", map[string]string{"method": "password", "result": "throttled"})
		if throttledBefore != 2 {
			t.Errorf("%v logins throttled, want 2", throttledBefore)
		}
		// Once the lock is over the right password gets in ...
		eventually.NoError(t, 10*time.Second, func() error {
			_, err := e.loginFrom(t, alice, "alice-right-pw", home, "s3")
			if err != nil && !errors.Is(err, api.ErrLoginThrottled) {
				t.Fatalf("login after the lock: %v", err)
			}
			if err != nil {
				return fmt.Errorf("still waiting for the right password accepted after the lock: %w", err)
			}
			return nil
		})
		// ... and the account's failures are forgotten: three free again.
		for i := range 3 {
			if _, err := e.loginFrom(t, alice, fmt.Sprintf("again-%d", i), home, "s4"); !errors.Is(err, api.ErrBadLogin) {
				t.Fatalf("failure %d after a success: %v, want a bad login", i, err)
			}
		}

		// An address spraying guesses over many accounts: its failures
		// (4 on alice so far) reach 5 free, then it is locked for every
		// account; other addresses are not.
		var others []int64
		for i := range 3 {
			others = append(others, e.register(t, fmt.Sprintf("user%d", i), "pw"))
		}
		if _, err := e.loginFrom(t, others[0], "spray", attacker, "s5"); !errors.Is(err, api.ErrBadLogin) {
			t.Fatalf("spray 1: %v, want a bad login", err)
		}
		if _, err := e.loginFrom(t, others[1], "spray", attacker, "s6"); !errors.Is(err, api.ErrBadLogin) {
			t.Fatalf("spray 2 (locks the address): %v, want a bad login", err)
		}
		if _, err := e.loginFrom(t, others[2], "pw", attacker, "s7"); !errors.Is(err, api.ErrLoginThrottled) {
			t.Fatalf("from the locked address: %v, want throttled", err)
		}
		if _, err := e.loginFrom(t, others[2], "pw", home, "s8"); err != nil {
			t.Fatalf("from another address: %v", err)
		}

		if got := metricstest.Value(t, reg, "natter_user_logins_total", map[string]string{"method": "password", "result": "bad_login"}); got != 9 {
			t.Errorf("bad logins: %v, want 9", got)
		}
		// The polling above was refused until the lock ended.
		throttled := metricstest.Value(t, reg, "natter_user_logins_total", map[string]string{"method": "password", "result": "throttled"})
		if got := metricstest.Value(t, reg, "natter_user_login_throttled_total", map[string]string{"scope": "account"}); got != throttled-1 || got < 2 {
			t.Errorf("throttled by account: %v of %v throttled logins, want all but the one by address", got, throttled)
		}
		if got := metricstest.Value(t, reg, "natter_user_login_throttled_total", map[string]string{"scope": "address"}); got != 1 {
			t.Errorf("throttled by address: %v, want 1", got)
		}
		if got := metricstest.Value(t, reg, "natter_user_login_delays_total", map[string]string{"scope": "account"}); got != 1 {
			t.Errorf("account locks: %v, want 1", got)
		}

		out := logs.String()
		if n := strings.Count(out, "login failed: wrong password"); n != 9 {
			t.Errorf("%d failed logins logged, want 9:\n%s", n, out)
		}
		for _, want := range []string{fmt.Sprintf("user_id=%d remote=%s", alice, attacker), "login refused: too many failed logins"} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in the log:\n%s", want, out)
			}
		}
		for _, secret := range []string{"guess-", "alice-right-pw", "spray", first.ResumeToken} {
			if strings.Contains(out, secret) {
				t.Errorf("the log shows %q:\n%s", secret, out)
			}
		}
	})
}

// TestBruteForce is the attack of issue 16: 2,000 wrong passwords against
// one account from 20 connections at once, through NATS, while 20 other
// users log in. Without the throttle every guess is checked (200 of them
// here); with it the
// passwords checked stay within what the flags allow for the time the
// attack took (the free failures, then one guess per lock, the locks
// doubling up to the max delay), and every other user gets in at once,
// never throttled.
func TestBruteForce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		throttle := user.ThrottleConfig{AccountFailures: 5, AddressFailures: 0,
			Delay: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond, Window: time.Hour}
		for _, on := range []bool{false, true} {
			reg := prometheus.NewRegistry()
			cfg := testConfig(user.PolicyKick)
			cfg.Registerer = reg
			if on {
				cfg.Throttle = throttle
			}
			var logs logtest.Buffer
			e := newLoggedEnv(t, db, cfg, &logs)
			e.beat(t, "gw", time.Minute)
			prefix := map[bool]string{false: "off", true: "on"}[on]
			victim := e.register(t, prefix+"-victim", "victim-pw")
			var users []int64
			for i := range 20 {
				users = append(users, e.register(t, fmt.Sprintf("%s-user%d", prefix, i), "pw"))
			}

			// 2,000 guesses against the throttle; without it 200 show that
			// every one is checked.
			guesses := int64(2000)
			if !on {
				guesses = 200
			}
			const conns = 20
			var next, checked, refused atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := next.Add(1); n <= guesses; n = next.Add(1) {
						_, err := e.loginFrom(t, victim, fmt.Sprintf("guess-%d", n), fmt.Sprintf("203.0.113.%d", c), "attack")
						switch {
						case errors.Is(err, api.ErrBadLogin):
							checked.Add(1)
						case errors.Is(err, api.ErrLoginThrottled):
							refused.Add(1)
						default:
							t.Errorf("guess %d: %v", n, err)
							return
						}
					}
				}()
			}
			// The other users log in while the attack runs.
			var slowest time.Duration
			for i, uid := range users {
				t0 := time.Now()
				if _, err := e.loginFrom(t, uid, "pw", fmt.Sprintf("198.51.100.%d", i), fmt.Sprintf("u%d", i)); err != nil {
					t.Errorf("user %d logging in during the attack: %v", uid, err)
				}
				slowest = max(slowest, time.Since(t0))
			}
			wg.Wait()
			took := time.Since(start)
			t.Logf("throttle %s: %d guesses in %v: %d passwords checked (%.1f/s), %d refused; slowest of 20 other logins %v",
				prefix, guesses, took.Round(time.Millisecond), checked.Load(), float64(checked.Load())/took.Seconds(),
				refused.Load(), slowest.Round(time.Millisecond))
			if !on {
				if checked.Load() != guesses {
					t.Errorf("without the throttle %d of %d guesses checked", checked.Load(), guesses)
				}
				continue
			}
			// What the flags allow in took: the free failures, the locks
			// while they double (each lets one guess through when it
			// ends), then one guess per max delay; one more for the guess
			// running when a lock begins.
			allowed := int64(throttle.AccountFailures) + 1
			var locked time.Duration
			for d := throttle.Delay; locked < took; d = min(2*d, throttle.MaxDelay) {
				locked += d
				allowed++
			}
			if checked.Load() > allowed {
				t.Errorf("with the throttle %d passwords checked in %v; the flags allow %d", checked.Load(), took, allowed)
			}
			if checked.Load()+refused.Load() != guesses {
				t.Errorf("%d checked + %d refused, want %d answers", checked.Load(), refused.Load(), guesses)
			}
			if got := metricstest.Value(t, reg, "natter_user_logins_total", map[string]string{"method": "password", "result": "ok"}); got != 20 {
				t.Errorf("%v other users logged in, want 20", got)
			}
			if n := strings.Count(logs.String(), "login failed: wrong password"); int64(n) != checked.Load() {
				t.Errorf("%d failed logins logged, %d checked", n, checked.Load())
			}
		}
	})
}

// TestNamesOfExistingAccounts: accounts stored before names were compared
// in their unique form, two of whose names are one after normalisation
// ("bob", "BOB"), are given their unique forms at start: both keep their
// names and log in; the younger is logged; neither form can be registered
// again.
func TestNamesOfExistingAccounts(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		store := account.New(db)
		if err := store.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		// As an older version stored them: no unique forms.
		hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, name := range []string{"bob", "BOB", "carol", "ｂｏｂ"} {
			res, err := db.ExecContext(ctx, `INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, ?)`, name, string(hash), 1)
			if err != nil {
				t.Fatal(err)
			}
			id, _ := res.LastInsertId()
			ids = append(ids, id)
		}
		var logs logtest.Buffer
		e := newLoggedEnv(t, db, testConfig(user.PolicyKick), &logs)
		e.beat(t, "gw", time.Minute)
		for i, id := range ids {
			r, err := e.login(t, id, "pw", "gw", fmt.Sprintf("s%d", i))
			if err != nil || r.Name != []string{"bob", "BOB", "carol", "ｂｏｂ"}[i] {
				t.Errorf("login of %d: %+v %v", id, r, err)
			}
		}
		for _, name := range []string{"Bob", "bob", "CAROL"} {
			if err := e.call(t, subject.UserRegister, api.RegisterRequest{Name: name, Password: "pw"}, nil); !errors.Is(err, api.ErrNameTaken) {
				t.Errorf("register %q: %v, want name taken", name, err)
			}
		}
		out := logs.String()
		for _, younger := range []int64{ids[1], ids[3]} {
			if !strings.Contains(out, fmt.Sprintf("user_id=%d owner_id=%d", younger, ids[0])) {
				t.Errorf("collision of %d with %d not logged:\n%s", younger, ids[0], out)
			}
		}
		var n int
		if err := db.ReadQueryRow(context.Background(), `SELECT COUNT(*) FROM user_names`).Scan(&n); err != nil || n != len(ids) {
			t.Errorf("%d unique forms (%v), want %d", n, err, len(ids))
		}
	})
}
