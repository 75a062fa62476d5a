package sqldb

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
)

// TestInTxDeferred commits without a sync, leaves the writer connection
// with its fsync on commit for everyone else, and syncs on demand: one
// sync for many commits when they come together.
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
	synchronous := func() int {
		var v int
		if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := synchronous(); v != 2 {
		t.Fatalf("synchronous = %d before, want 2 (FULL)", v)
	}
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			err := db.InTxDeferred(ctx, func(tx *sql.Tx) error {
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
	if v := synchronous(); v != 2 {
		t.Errorf("synchronous = %d after deferred commits, want 2 (FULL)", v)
	}
	var count int
	if err := db.Read.QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&count); err != nil || count != n {
		t.Fatalf("%d rows (%v), want %d", count, err, n)
	}
	if s := db.WALSyncs(); s == 0 || s > n {
		t.Errorf("%d syncs for %d commits", s, n)
	}
	w := db.wal
	w.mu.Lock()
	begun, done, synced := w.begun, w.done, w.synced
	w.mu.Unlock()
	if begun != n || done != n || synced != n {
		t.Errorf("begun %d, done %d, synced %d; want %d each", begun, done, synced, n)
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
	// A commit not synced yet: WaitDurable syncs it.
	if err := db.InTxDeferred(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO t (v) VALUES (0)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.WaitDurable(); err != nil {
		t.Fatal(err)
	}
	if db.WALSyncs() != before+1 {
		t.Errorf("%d syncs after WaitDurable, want %d", db.WALSyncs(), before+1)
	}
}
