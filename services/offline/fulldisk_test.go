package offline

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/services/user"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
)

// smallDisk mounts a tmpfs of size bytes on a new directory and returns
// it, with a function that resizes it; ok is false where a tmpfs cannot be
// mounted (not root).
func smallDisk(t *testing.T, size int64) (dir string, resize func(size int64), ok bool) {
	t.Helper()
	dir = t.TempDir()
	mount := func(args ...string) error {
		out, err := exec.Command("mount", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("mount %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := mount("-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir); err != nil {
		t.Logf("NO TMPFS: %v; the reserve is set just under the free space of %s instead", err, dir)
		return dir, nil, false
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir, func(size int64) {
		if err := mount("-o", fmt.Sprintf("remount,size=%d", size), dir); err != nil {
			t.Fatal(err)
		}
	}, true
}

// TestFullDisk fills a small filesystem holding the database (SQLite, as
// natter serve keeps it: every service in one file) until stores answer
// "storage full; retry later" (busy: errno 110 at the gateway, never 111),
// then shows that a password login, a token resume, a registration, a
// fetch of the whole inbox and an ack still work (the space kept by
// --store-min-free), that readiness and the metric say full, and that once
// space is freed stores resume and every message whose store was answered
// is still there.
func TestFullDisk(t *testing.T) {
	dir, resize, tmpfs := smallDisk(t, 24<<20)
	db, err := sqldb.OpenSQLite(filepath.Join(dir, "natter.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ns := natstest.Run(t)
	ucfg := user.DefaultConfig()
	ucfg.BcryptCost = bcrypt.MinCost
	us, err := user.Start(context.Background(), natstest.Connect(t, ns), db, ucfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { us.Stop() })
	var s *Service
	minFree := int64(8 << 20)
	if !tmpfs {
		// Without a small filesystem: a reserve just under what is free
		// now, which the test's stores use up (so the database's own
		// full errors are not tried here; TestIsFull has them).
		free, ok := db.FreeBytes()
		if !ok {
			t.Fatal("no free space figure on SQLite")
		}
		minFree = int64(free) - 12<<20
		resize = func(int64) { s.storage.minFree.Store(-1) }
	}
	s = start(t, ns, db, Config{StoreMinFree: minFree, InboxMaxMessages: -1, InboxMaxBytes: -1, SenderRate: -1})
	nc := natstest.Connect(t, ns)

	register := func(name string) int64 {
		var resp api.RegisterResponse
		if err := call(nc, subject.UserRegister, api.RegisterRequest{Name: name, Password: "password"}, &resp); err != nil {
			t.Fatalf("register %s: %v", name, err)
		}
		return resp.ID
	}
	login := func(req api.LoginRequest) api.LoginResponse {
		t.Helper()
		var resp api.LoginResponse
		req.GatewayID, req.SessionID = "gw-1", fmt.Sprintf("s-%d", time.Now().UnixNano())
		if err := call(nc, subject.UserLogin, req, &resp); err != nil {
			t.Fatalf("login %d: %v", req.UserID, err)
		}
		return resp
	}
	alice, bob := register("alice"), register("bob")
	token := login(api.LoginRequest{UserID: bob, Password: "password"}).ResumeToken

	// Fill: 32 KiB messages to bob until the stores are refused.
	body := textBody(strings.Repeat("x", 32<<10))
	stored := map[string]bool{}
	var refused error
	for i := 0; i < 2000 && refused == nil; i++ {
		resp, err := store(nc, api.StoreRequest{From: alice, To: []int64{bob}, CID: fmt.Sprint(i), Body: body})
		if err != nil {
			refused = err
			break
		}
		stored[resp.MID] = true
	}
	var ae *api.Error
	if !errors.As(refused, &ae) || ae.Code != api.CodeBusy || ae.Message != api.ErrStorageFull.Message {
		t.Fatalf("after %d messages the store answered %v, want %v", len(stored), refused, api.ErrStorageFull)
	}
	if err := s.StoreReady(context.Background()); err == nil {
		t.Error("ready for stores on a full disk")
	}
	if v := testutil.ToFloat64(s.metrics.refused[refusedStorageFull]); v < 1 {
		t.Errorf("refused for storage full = %v", v)
	}
	t.Logf("full after %d messages of 32 KiB", len(stored))

	// Logins, resumes, registrations, fetches and acks go on.
	login(api.LoginRequest{UserID: alice, Password: "password"})
	token = login(api.LoginRequest{UserID: bob, ResumeToken: token}).ResumeToken
	register("carol")
	seen, last := fetchAll(t, nc, bob)
	if len(seen) != len(stored) {
		t.Errorf("fetched %d messages, %d stored", len(seen), len(stored))
	}
	if err := call(nc, subject.OfflineAck, api.AckRequest{Acks: []api.Ack{{UserID: bob, Seq: last}}}, nil); err != nil {
		t.Fatalf("ack on a full disk: %v", err)
	}
	if _, err := store(nc, api.StoreRequest{From: alice, To: []int64{bob}, CID: "still-full", Body: body}); !errors.Is(err, api.ErrBusy) {
		t.Errorf("store on a full disk: %v", err)
	}

	// Space returns: stores resume, nothing answered is lost.
	resize(96 << 20)
	eventually.NoError(t, 10*time.Second, func() error { return s.StoreReady(context.Background()) })
	resp, err := store(nc, api.StoreRequest{From: alice, To: []int64{bob}, CID: "after", Body: textBody("room again")})
	if err != nil {
		t.Fatalf("store once space is back: %v", err)
	}
	stored[resp.MID] = true
	login(api.LoginRequest{UserID: bob, ResumeToken: token})
	seen, _ = fetchAll(t, nc, bob)
	for mid := range stored {
		if !seen[mid] {
			t.Errorf("message %s answered as stored is gone", mid)
		}
	}
}

// fetchAll fetches user's whole inbox, page by page: the mids in it and
// its last seq.
func fetchAll(t *testing.T, nc *nats.Conn, user int64) (map[string]bool, int64) {
	t.Helper()
	seen := map[string]bool{}
	var last int64
	for after := int64(0); ; {
		page := fetch(t, nc, user, after, 0)
		if len(page.Messages) == 0 {
			return seen, last
		}
		for _, m := range page.Messages {
			seen[m.MID] = true
		}
		after, last = page.Messages[len(page.Messages)-1].Seq, page.Last
	}
}
