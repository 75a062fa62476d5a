package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/eventually"
)

// TestSQLiteCheckpointsInBackground commits about a megabyte and checks it
// reaches the database file without any commit doing the copy (the writer
// does not checkpoint: wal_autocheckpoint is 0).
func TestSQLiteCheckpointsInBackground(t *testing.T) {
	path := filepath.Join(t.TempDir(), "natter.db")
	db, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var auto int64
	if err := db.w.QueryRow("PRAGMA wal_autocheckpoint").Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("writer's wal_autocheckpoint = %d (%v), want 0", auto, err)
	}
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	err = db.InTx(context.Background(), func(tx *sql.Tx) error {
		if _, err := tx.Exec("CREATE TABLE t (v TEXT)"); err != nil {
			return err
		}
		for range 256 {
			if _, err := tx.Exec("INSERT INTO t (v) VALUES (?)", strings.Repeat("x", 4000)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 10*time.Second, func() error {
		if got := size(); got < before+1<<20 {
			return fmt.Errorf("still waiting for the committed megabyte to reach the database file: got %v, want >= before+1<<20", got)
		}
		return nil
	})
	// Close stops the checkpointer (a second Close of a view is harmless).
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
