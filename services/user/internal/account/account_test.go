package account_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/natter-chat/natter/services/user/internal/account"
	"github.com/natter-chat/natter/services/user/internal/names"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/sqldb"
)

func newStore(t *testing.T, db *sqldb.DB) *account.Store {
	t.Helper()
	return dbtest.Migrated(t, account.New(db))
}

func sessionRows(t *testing.T, db *sqldb.DB, uid int64) int {
	t.Helper()
	var n int
	if err := db.ReadQueryRow(context.Background(), `SELECT COUNT(*) FROM sessions WHERE user_id = ?`, uid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRegisterLookup(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db)
		registered := []string{
			"alice",
			"Alicia",
			"張偉",          // CJK
			"𠮷野家",         // a 4-byte CJK character
			"😀🎉 party",    // emoji
			"e\u0301cole", // stored as given (decomposed é)
		}
		ids := map[string]int64{}
		for _, name := range registered {
			id, err := s.Register(ctx, name, names.KeyHash(name), []byte("hash-of-"+name))
			if err != nil {
				t.Fatalf("register %q: %v", name, err)
			}
			ids[name] = id
		}
		for _, name := range registered {
			if _, err := s.Register(ctx, name, names.KeyHash(name), []byte("x")); !errors.Is(err, account.ErrNameTaken) {
				t.Errorf("register %q again: got %v, want ErrNameTaken", name, err)
			}
		}
		// Another name with a taken unique form is taken, and leaves no
		// account behind.
		for _, name := range []string{"Alice", "\u00e9cole", "ÉCOLE"} {
			if _, err := s.Register(ctx, name, names.KeyHash(name), []byte("x")); !errors.Is(err, account.ErrNameTaken) {
				t.Errorf("register %q: got %v, want ErrNameTaken", name, err)
			}
		}
		var n int
		if err := db.ReadQueryRow(context.Background(), `SELECT COUNT(*) FROM users`).Scan(&n); err != nil || n != len(registered) {
			t.Errorf("%d accounts (%v), want %d", n, err, len(registered))
		}
		var want []account.User
		lookup := []int64{999999}
		for _, name := range registered {
			want = append(want, account.User{ID: ids[name], Name: name})
			lookup = append(lookup, ids[name])
		}
		got, err := s.Lookup(ctx, lookup)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("lookup: got %+v, want %+v", got, want)
		}
		for _, name := range registered {
			gotName, hash, err := s.PasswordHash(ctx, ids[name])
			if err != nil {
				t.Fatal(err)
			}
			if gotName != name || !bytes.Equal(hash, []byte("hash-of-"+name)) {
				t.Errorf("password hash of %d: got %q %q", ids[name], gotName, hash)
			}
		}
		if _, _, err := s.PasswordHash(ctx, 999999); !errors.Is(err, account.ErrNotFound) {
			t.Errorf("password hash of unknown id: got %v, want ErrNotFound", err)
		}
		if got, err := s.Lookup(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("lookup of no ids: got %v, %v", got, err)
		}
	})
}

func TestClaimSession(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db)
		// Lease of gw-a runs until 1000, gw-b until 5000; gw-x never beat.
		for gw, exp := range map[string]int64{"gw-a": 1000, "gw-b": 5000} {
			if _, err := s.GatewayBeat(ctx, gw, exp); err != nil {
				t.Fatal(err)
			}
		}
		type prev struct{ session, gateway string }
		tests := []struct {
			name     string
			prev     *prev // claimed first, at time 0
			policy   account.Policy
			now      int64
			replaced string
			err      error
		}{
			{name: "first claim", policy: account.PolicyReject, now: 500},
			{name: "kick live", prev: &prev{"s1", "gw-a"}, policy: account.PolicyKick, now: 500, replaced: "s1"},
			{name: "reject live", prev: &prev{"s1", "gw-a"}, policy: account.PolicyReject, now: 500, err: account.ErrSessionLive},
			{name: "reject at expiry", prev: &prev{"s1", "gw-a"}, policy: account.PolicyReject, now: 1000, replaced: "s1"},
			{name: "reject after expiry", prev: &prev{"s1", "gw-a"}, policy: account.PolicyReject, now: 2000, replaced: "s1"},
			{name: "reject live on other gateway", prev: &prev{"s1", "gw-b"}, policy: account.PolicyReject, now: 2000, err: account.ErrSessionLive},
			{name: "reject without lease", prev: &prev{"s1", "gw-x"}, policy: account.PolicyReject, now: 500, replaced: "s1"},
			{name: "kick dead", prev: &prev{"s1", "gw-a"}, policy: account.PolicyKick, now: 2000, replaced: "s1"},
			{name: "same session again", prev: &prev{"s2", "gw-a"}, policy: account.PolicyKick, now: 500},
			{name: "reject same session again", prev: &prev{"s2", "gw-b"}, policy: account.PolicyReject, now: 500},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				uid := int64(100 + i)
				if tt.prev != nil {
					if _, _, err := claimSession(ctx, s, uid, tt.prev.session, tt.prev.gateway, 0, account.PolicyKick); err != nil {
						t.Fatal(err)
					}
				}
				replaced, _, err := claimSession(ctx, s, uid, "s2", "gw-b", tt.now, tt.policy)
				if !errors.Is(err, tt.err) {
					t.Fatalf("claim: got error %v, want %v", err, tt.err)
				}
				if replaced != tt.replaced {
					t.Errorf("claim: replaced %q, want %q", replaced, tt.replaced)
				}
				if n := sessionRows(t, db, uid); n != 1 {
					t.Errorf("%d session rows, want 1", n)
				}
			})
		}
	})
}

func TestReleaseSessions(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db)
		if _, _, err := claimSession(ctx, s, 1, "old", "gw", 0, account.PolicyKick); err != nil {
			t.Fatal(err)
		}
		if _, _, err := claimSession(ctx, s, 1, "new", "gw", 0, account.PolicyKick); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReleaseSessions(ctx, []account.SessionRef{{UserID: 1, SessionID: "old"}}); err != nil {
			t.Fatal(err)
		}
		if n := sessionRows(t, db, 1); n != 1 {
			t.Fatalf("releasing the replaced session ended its successor")
		}
		if _, err := s.ReleaseSessions(ctx, []account.SessionRef{{UserID: 1, SessionID: "new"}}); err != nil {
			t.Fatal(err)
		}
		if n := sessionRows(t, db, 1); n != 0 {
			t.Fatalf("releasing the current session left %d rows", n)
		}
	})
}

func TestGatewayLeaveAndOnline(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db)
		now := time.Now().UnixMilli()
		leases := map[string]int64{"gw-a": now + 60_000, "gw-b": now + 60_000, "gw-dead": now - 1}
		for gw, exp := range leases {
			if _, err := s.GatewayBeat(ctx, gw, exp); err != nil {
				t.Fatal(err)
			}
		}
		claims := []struct {
			uid int64
			gw  string
		}{{1, "gw-a"}, {2, "gw-a"}, {3, "gw-b"}, {4, "gw-dead"}, {5, "gw-never"}}
		for _, c := range claims {
			if _, _, err := claimSession(ctx, s, c.uid, fmt.Sprint("s", c.uid), c.gw, now, account.PolicyKick); err != nil {
				t.Fatal(err)
			}
		}
		all := []int64{1, 2, 3, 4, 5, 6}
		check := func(want ...int64) {
			t.Helper()
			got, err := s.Online(ctx, all)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("online: got %v, want %v", got, want)
			}
		}
		check(1, 2, 3)
		if got, err := s.Online(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("online of no ids: got %v, %v", got, err)
		}

		if _, err := s.GatewayLeave(ctx, "gw-a"); err != nil {
			t.Fatal(err)
		}
		check(3)
		for _, uid := range []int64{1, 2} {
			if n := sessionRows(t, db, uid); n != 0 {
				t.Errorf("user %d: %d session rows after its gateway left", uid, n)
			}
		}
		if n := sessionRows(t, db, 3); n != 1 {
			t.Errorf("user 3 on another gateway lost its session")
		}
		// gw-a is gone: a beat brings it back, without its old sessions.
		if _, err := s.GatewayBeat(ctx, "gw-a", now+60_000); err != nil {
			t.Fatal(err)
		}
		check(3)
		// A beat can also end a lease early.
		if _, err := s.GatewayBeat(ctx, "gw-b", now-1); err != nil {
			t.Fatal(err)
		}
		check()
	})
}

func TestCleanup(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db)
		const cutoff = 10_000
		for gw, exp := range map[string]int64{"gw-old": cutoff - 1, "gw-recent": cutoff + 1} {
			if _, err := s.GatewayBeat(ctx, gw, exp); err != nil {
				t.Fatal(err)
			}
		}
		claims := []struct {
			uid     int64
			gw      string
			started int64
			kept    bool
		}{
			{1, "gw-old", cutoff + 5, false},      // its lease is long gone
			{2, "gw-recent", 0, true},             // its lease expired recently
			{3, "gw-never", cutoff - 1, false},    // no lease, old
			{4, "gw-never", cutoff + 1, true},     // no lease, but just started
			{5, "gw-recent", cutoff + 100, true},  // fine
			{6, "gw-old", cutoff + 100000, false}, // started late, still on a dead gateway
		}
		for _, c := range claims {
			if _, _, err := claimSession(ctx, s, c.uid, "s", c.gw, c.started, account.PolicyKick); err != nil {
				t.Fatal(err)
			}
		}
		sessions, gateways, err := s.Cleanup(ctx, cutoff)
		if err != nil {
			t.Fatal(err)
		}
		if sessions != 3 || gateways != 1 {
			t.Errorf("cleanup removed %d sessions, %d gateways; want 3, 1", sessions, gateways)
		}
		for _, c := range claims {
			if got := sessionRows(t, db, c.uid) == 1; got != c.kept {
				t.Errorf("user %d on %s: kept %v, want %v", c.uid, c.gw, got, c.kept)
			}
		}
		var n int
		if err := db.ReadQueryRow(context.Background(), `SELECT COUNT(*) FROM gateways`).Scan(&n); err != nil || n != 1 {
			t.Errorf("%d leases left (%v), want 1", n, err)
		}
	})
}

// TestClaimRace claims one user's session from many goroutines at once,
// through two gateways with live leases.
func TestClaimRace(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db)
		now := time.Now().UnixMilli()
		for _, gw := range []string{"gw-0", "gw-1"} {
			if _, err := s.GatewayBeat(ctx, gw, now+60_000); err != nil {
				t.Fatal(err)
			}
		}
		for _, policy := range []account.Policy{account.PolicyKick, account.PolicyReject} {
			t.Run(policy.String(), func(t *testing.T) {
				uid := int64(policy)
				const n = 20
				var wg sync.WaitGroup
				errs := make([]error, n)
				replaced := make([]string, n)
				for i := range n {
					wg.Go(func() {
						replaced[i], _, errs[i] = claimSession(ctx, s, uid, fmt.Sprint("s", i), fmt.Sprint("gw-", i%2), now, policy)
					})
				}
				wg.Wait()
				ok, live, nothingReplaced := 0, 0, 0
				for i, err := range errs {
					switch {
					case err == nil:
						ok++
						if replaced[i] == "" {
							nothingReplaced++
						}
					case errors.Is(err, account.ErrSessionLive):
						live++
					default:
						t.Errorf("claim %d: %v", i, err)
					}
				}
				if want := map[account.Policy]int{account.PolicyKick: n, account.PolicyReject: 1}[policy]; ok != want {
					t.Errorf("%d claims succeeded, want %d (%d refused)", ok, want, live)
				}
				if nothingReplaced != 1 {
					t.Errorf("%d claims replaced nothing, want exactly the first", nothingReplaced)
				}
				if rows := sessionRows(t, db, uid); rows != 1 {
					t.Errorf("%d session rows, want 1", rows)
				}
			})
		}
	})
}

// TestClaimSessionsBatch runs several logins' claims in one transaction:
// a later claim of the same user sees the earlier one, a refusal changes
// nothing, tokens are issued, rotated and revoked with the claims.
func TestClaimSessionsBatch(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db)
		if _, err := s.GatewayBeat(ctx, "gw", 10_000); err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, n := range []string{"a", "b", "c"} {
			id, err := s.Register(ctx, n, names.KeyHash(n), []byte("hash"))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		a, b, c := ids[0], ids[1], ids[2]
		// c is online with session c0 and token tc0.
		if err := s.ClaimSessions(ctx, []*account.Claim{{UserID: c, SessionID: "c0", GatewayID: "gw", Now: 100,
			Policy: account.PolicyKick, IssueHash: "tc0", ExpiresAt: 5000}}); err != nil {
			t.Fatal(err)
		}
		batch := []*account.Claim{
			{UserID: a, SessionID: "a1", GatewayID: "gw", Now: 200, Policy: account.PolicyKick, IssueHash: "ta1", ExpiresAt: 5000},
			{UserID: a, SessionID: "a2", GatewayID: "gw", Now: 200, Policy: account.PolicyKick, IssueHash: "ta2", ExpiresAt: 5000},
			{UserID: b, SessionID: "b1", GatewayID: "gw", Now: 200, Policy: account.PolicyReject, IssueHash: "tb1", ExpiresAt: 5000},
			{UserID: b, SessionID: "b2", GatewayID: "gw", Now: 200, Policy: account.PolicyReject, IssueHash: "tb2", ExpiresAt: 5000},
			// c resumes with tc0, which becomes tc1; tc0 again is refused.
			{UserID: c, SessionID: "c1", GatewayID: "gw", Now: 200, Policy: account.PolicyKick, RotateHash: "tc0", IssueHash: "tc1"},
			{UserID: c, SessionID: "c2", GatewayID: "gw", Now: 200, Policy: account.PolicyKick, RotateHash: "tc0", IssueHash: "tc2"},
		}
		if err := s.ClaimSessions(ctx, batch); err != nil {
			t.Fatal(err)
		}
		want := []struct {
			replaced string
			wasLive  bool
			err      error
		}{{"", false, nil}, {"a1", true, nil}, {"", false, nil}, {"", true, account.ErrSessionLive}, {"c0", true, nil},
			{"", true, account.ErrTokenUsed}}
		for i, w := range want {
			if c := batch[i]; c.Replaced != w.replaced || c.WasLive != w.wasLive || !errors.Is(c.Err, w.err) {
				t.Errorf("claim %d: replaced %q live %v err %v, want %+v", i, c.Replaced, c.WasLive, c.Err, w)
			}
		}
		tokens := map[string]int64{"ta1": 0, "ta2": a, "tb1": b, "tb2": 0, "tc0": 0, "tc1": c, "tc2": 0}
		for hash, uid := range tokens {
			_, _, ok, err := s.TokenUser(ctx, hash, max(uid, 1), 300)
			if err != nil || ok != (uid != 0) {
				t.Errorf("token %s: ok %v err %v, want ok %v", hash, ok, err, uid != 0)
			}
		}
	})
}

// TestConcurrentFirstClaims: many users logging in for the first time at
// once (no session rows yet) all get their session; two first logins of
// one user end with one replacing the other.
func TestConcurrentFirstClaims(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db)
		const n = 64
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		replaced := make(chan string, 2*n)
		for i := range n {
			for k := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := &account.Claim{UserID: int64(1000 + i), SessionID: fmt.Sprintf("s%d-%d", i, k), GatewayID: "gw",
						Now: 100, Policy: account.PolicyKick, IssueHash: fmt.Sprintf("t%d-%d", i, k), ExpiresAt: 5000}
					if err := s.ClaimSessions(ctx, []*account.Claim{c}); err != nil {
						errs <- err
					}
					if c.Replaced != "" {
						replaced <- c.Replaced
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		close(replaced)
		for err := range errs {
			t.Errorf("claim: %v", err)
		}
		if got := len(replaced); got != n {
			t.Errorf("%d claims replaced another, want %d (one per user)", got, n)
		}
		for i := range n {
			if rows := sessionRows(t, db, int64(1000+i)); rows != 1 {
				t.Errorf("user %d has %d session rows", 1000+i, rows)
			}
		}
	})
}
