package sqldb

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
)

// TestInTxDeferred commits without a sync and syncs on demand: one sync
// for many commits when they come together; InTx and ExecContext are
// synced when they return.
func TestInTxDeferred(t *testing.T) {
	db, err := OpenSQLite(filepath.Join(t.TempDir(), "natter.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (v INTEGER)"); err != nil {
		t.Fatal(err)
	}
	synced := func() (begun, done, synced uint64) {
		w := db.wal
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.begun, w.done, w.synced
	}
	if b, d, s := synced(); b != 1 || d != 1 || s != 1 {
		t.Fatalf("after ExecContext: begun %d, done %d, synced %d; want 1 each", b, d, s)
	}
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := db.InTxDeferred(ctx, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, "INSERT INTO t (v) VALUES (?)", i)
				return err
			})
			if err != nil {
				t.Error(err)
				return
			}
			if err := db.SyncWAL(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var count int
	if err := db.ReadQueryRow(ctx, "SELECT COUNT(*) FROM t").Scan(&count); err != nil || count != n {
		t.Fatalf("%d rows (%v), want %d", count, err, n)
	}
	if s := db.WALSyncs(); s == 0 || s > n {
		t.Errorf("%d syncs for %d commits", s, n)
	}
	if b, d, s := synced(); b != n+1 || d != n+1 || s != n+1 {
		t.Errorf("begun %d, done %d, synced %d; want %d each", b, d, s, n+1)
	}
	// Nothing left to sync: WaitDurable and SyncWAL return at once.
	before := db.WALSyncs()
	if err := db.WaitDurable(); err != nil {
		t.Fatal(err)
	}
	if err := db.SyncWAL(); err != nil {
		t.Fatal(err)
	}
	if db.WALSyncs() != before {
		t.Error("synced again with nothing to sync")
	}
	// A commit not synced yet: WaitDurable syncs it; WaitSynced waits
	// for a sync that covers it.
	c, err := db.InTxDeferred(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO t (v) VALUES (0)")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, s := synced(); s >= c {
		t.Fatalf("commit %d synced (%d) before anyone synced", c, s)
	}
	waited := make(chan struct{})
	go func() { db.WaitSynced(c); close(waited) }()
	if err := db.WaitDurable(); err != nil {
		t.Fatal(err)
	}
	<-waited
	if db.WALSyncs() != before+1 {
		t.Errorf("%d syncs after WaitDurable, want %d", db.WALSyncs(), before+1)
	}
	// InTx is synced when it returns.
	if err := db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO t (v) VALUES (1)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if b, d, s := synced(); s != d || d != b {
		t.Errorf("after InTx: begun %d, done %d, synced %d", b, d, s)
	}
}
