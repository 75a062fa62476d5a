package sqldb

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// TestIsFull recognizes a full storage in each dialect's errors, and
// SQLite's own when its size limit is reached.
func TestIsFull(t *testing.T) {
	for _, c := range []struct {
		err  error
		full bool
	}{
		{&mysql.MySQLError{Number: 1114, Message: "The table 'inbox_entries' is full"}, true},
		{&mysql.MySQLError{Number: 1021, Message: "Disk full (/var/lib/mysql); waiting for someone to free some space..."}, true},
		{&mysql.MySQLError{Number: 1030, Message: "Got error 28 \"No space left on device\" from storage engine InnoDB"}, true},
		{&mysql.MySQLError{Number: 1030, Message: "Got error 1 from storage engine"}, false},
		{&mysql.MySQLError{Number: 1062, Message: "Duplicate entry"}, false},
		{fmt.Errorf("sync wal: %w", syscall.ENOSPC), true},
		{fmt.Errorf("sync wal: %w", syscall.EIO), false},
		{nil, false},
	} {
		if got := IsFull(c.err); got != c.full {
			t.Errorf("IsFull(%v) = %v, want %v", c.err, got, c.full)
		}
	}
	ctx := context.Background()
	db, err := OpenSQLite(filepath.Join(t.TempDir(), "natter.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (v TEXT)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "PRAGMA max_page_count = 20"); err != nil {
		t.Fatal(err)
	}
	_, err = db.ExecContext(ctx, "INSERT INTO t VALUES (?)", strings.Repeat("x", 1<<20))
	if !IsFull(err) {
		t.Errorf("insert past max_page_count: %v, not full", err)
	}
	if free, ok := db.FreeBytes(); !ok || free == 0 {
		t.Errorf("FreeBytes = %d, %v", free, ok)
	}
}
