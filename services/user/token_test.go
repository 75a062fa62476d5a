package user_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/natter-chat/natter/services/user"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
)

func TestResumeTokens(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, testConfig(user.PolicyKick))
		alice := e.register(t, "alice", "pw")
		bob := e.register(t, "bob", "pw")
		e.beat(t, "gw", time.Minute)
		first, err := e.login(t, alice, "pw", "gw", "s1")
		if err != nil || len(first.ResumeToken) < 40 {
			t.Fatalf("password login: %+v %v", first, err)
		}
		resume := func(uid int64, token, sid string) (api.LoginResponse, error) {
			var resp api.LoginResponse
			err := e.call(t, subject.UserLogin, api.LoginRequest{UserID: uid, ResumeToken: token, GatewayID: "gw", SessionID: sid}, &resp)
			return resp, err
		}
		// Resuming needs no password, replaces the session and rotates the
		// token: the new one works, the one used does not any more.
		r, err := resume(alice, first.ResumeToken, "s2")
		if err != nil || r.ResumeToken == "" || r.ResumeToken == first.ResumeToken || r.Replaced != "s1" || r.Name != "alice" {
			t.Fatalf("resume: %+v %v", r, err)
		}
		if _, err := resume(alice, first.ResumeToken, "s3"); !errors.Is(err, api.ErrBadLogin) {
			t.Fatalf("the used token resumed again: %v", err)
		}
		token := r.ResumeToken
		// A wrong token, or alice's token for bob, is a bad login.
		if _, err := resume(alice, "not-a-token", "s3"); !errors.Is(err, api.ErrBadLogin) {
			t.Fatalf("wrong token: %v", err)
		}
		if _, err := resume(bob, token, "s3"); !errors.Is(err, api.ErrBadLogin) {
			t.Fatalf("foreign token: %v", err)
		}
		// A dropped connection (logout without revoke) keeps the token...
		if err := e.call(t, subject.UserLogouts, api.LogoutsRequest{Sessions: []api.SessionRef{{UserID: alice, SessionID: "s2"}}}, nil); err != nil {
			t.Fatal(err)
		}
		r, err = resume(alice, token, "s4")
		if err != nil {
			t.Fatalf("resume after a dropped connection: %v", err)
		}
		token = r.ResumeToken
		// ...an explicit logout of the session using it revokes it.
		if err := e.call(t, subject.UserLogouts, api.LogoutsRequest{Sessions: []api.SessionRef{{UserID: alice, SessionID: "s4", Revoke: true}}}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := resume(alice, token, "s5"); !errors.Is(err, api.ErrBadLogin) {
			t.Fatalf("resume after logout: %v", err)
		}
		// A password login elsewhere replaces the session: the replaced
		// session's token is revoked (it cannot kick the new one back),
		// the new session's works.
		second, err := e.login(t, alice, "pw", "gw", "s6")
		if err != nil {
			t.Fatal(err)
		}
		third, err := e.login(t, alice, "pw", "gw", "s7")
		if err != nil || third.Replaced != "s6" {
			t.Fatalf("second password login: %+v %v", third, err)
		}
		if _, err := resume(alice, second.ResumeToken, "s8"); !errors.Is(err, api.ErrBadLogin) {
			t.Fatalf("the replaced session resumed: %v", err)
		}
		r, err = resume(alice, third.ResumeToken, "s9")
		if err != nil || r.Replaced != "s7" {
			t.Fatalf("resume of the live session: %+v %v", r, err)
		}
		if r, err = resume(alice, r.ResumeToken, "s10"); err != nil {
			t.Fatalf("the rotated token: %v", err)
		}

		// Two resumes with one token at once (a stolen token raced by its
		// owner): exactly one gets in.
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = resume(alice, r.ResumeToken, fmt.Sprintf("race-%d", i))
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, api.ErrBadLogin):
				t.Errorf("racing resume: %v", err)
			}
		}
		if ok != 1 {
			t.Errorf("%d of %d racing resumes with one token got in, want 1", ok, len(errs))
		}

		// An expired token is refused and cleaned up.
		ctx := context.Background()
		if _, err := e.db.ExecContext(ctx, `INSERT INTO resume_tokens (token_hash, user_id, session_id, expires_at) VALUES (?, ?, ?, ?)`,
			"deadbeef", bob, "sx", time.Now().Add(-time.Second).UnixMilli()); err != nil {
			t.Fatal(err)
		}
		if _, _, ok, err := e.store.TokenUser(ctx, "deadbeef", bob, time.Now().UnixMilli()); ok || err != nil {
			t.Fatalf("expired token accepted: %v %v", ok, err)
		}
		if n, err := e.store.ExpireTokens(ctx, time.Now().UnixMilli()); n < 1 || err != nil {
			t.Fatalf("expire tokens: %d %v", n, err)
		}
	})
}
