//go:build linux && (amd64 || arm64 || loong64 || ppc64le || riscv64 || s390x)

package sqldb

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWALWritesGathered: a commit of many pages reaches the WAL in one
// write; readers on other connections, the background checkpoints and a
// reopened database see every commit whole.
func TestWALWritesGathered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "natter.db")
	db, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	if !walWrites.ok {
		t.Fatal("the WAL write calls were not replaced")
	}
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (k INTEGER PRIMARY KEY, batch INTEGER NOT NULL, v BLOB NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	const commits, rows = 150, 20
	calls0, frames0 := walWrites.calls.Load(), walWrites.frames.Load()

	var done atomic.Bool
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			last := 0
			for !done.Load() {
				// A commit is seen whole or not at all.
				var n, batches int
				err := db.ReadQueryRow(ctx, "SELECT COUNT(*), COUNT(DISTINCT batch) FROM t").Scan(&n, &batches)
				if err != nil {
					t.Error(err)
					return
				}
				if n != batches*rows || n < last {
					t.Errorf("read %d rows in %d commits (before: %d rows)", n, batches, last)
					return
				}
				last = n
			}
		})
	}
	for b := range commits {
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			for range rows {
				v := make([]byte, 700)
				rand.Read(v)
				if _, err := tx.ExecContext(ctx, "INSERT INTO t (batch, v) VALUES (?, ?)", b, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	readers.Wait()
	calls, frames := walWrites.calls.Load()-calls0, walWrites.frames.Load()-frames0
	// Each commit writes about 4 pages (14 KB of rows, an index page);
	// other tests' databases may add to the counts but not take away.
	if frames < 3*commits || calls == 0 || frames/calls < 3 {
		t.Errorf("%d commits: %d frames in %d writes; want several frames a write", commits, frames, calls)
	}
	check := func(db *DB) {
		t.Helper()
		var ok string
		if err := db.ReadQueryRow(ctx, "PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
			t.Fatalf("integrity_check: %q, %v", ok, err)
		}
		var n int
		if err := db.ReadQueryRow(ctx, "SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != commits*rows {
			t.Fatalf("%d rows (%v), want %d", n, err, commits*rows)
		}
	}
	check(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	check(db)
}

// TestWALWritesKilled: a process killed while it commits loses no commit
// that had returned (synced) before the kill.
func TestWALWritesKilled(t *testing.T) {
	if path := os.Getenv("NATTER_SQLDB_WAL_CHILD"); path != "" {
		walChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "natter.db")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestWALWritesKilled$")
	cmd.Env = append(os.Environ(), "NATTER_SQLDB_WAL_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []int
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(30 * time.Second)
	for sc.Scan() && len(acked) < 200 && time.Now().Before(deadline) {
		k, err := strconv.Atoi(sc.Text())
		if err != nil {
			continue // the test framework's own output
		}
		acked = append(acked, k)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if len(acked) < 50 {
		t.Fatalf("the child committed only %d transactions", len(acked))
	}
	db, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ok string
	if err := db.ReadQueryRow(context.Background(), "PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check: %q, %v", ok, err)
	}
	for _, k := range acked {
		var n int
		if err := db.ReadQueryRow(context.Background(), "SELECT COUNT(*) FROM t WHERE batch = ?", k).Scan(&n); err != nil || n != 10 {
			t.Fatalf("commit %d, acknowledged before the kill: %d rows (%v), want 10", k, n, err)
		}
	}
}

// walChild commits batches of rows and prints each batch's number once
// its commit returned, until it is killed.
func walChild(path string) {
	db, err := OpenSQLite(path)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (k INTEGER PRIMARY KEY, batch INTEGER NOT NULL, v BLOB NOT NULL)"); err != nil {
		panic(err)
	}
	w := bufio.NewWriter(os.Stdout)
	for b := 0; ; b++ {
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			for range 10 {
				v := make([]byte, 900)
				rand.Read(v)
				if _, err := tx.ExecContext(ctx, "INSERT INTO t (batch, v) VALUES (?, ?)", b, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			panic(err)
		}
		fmt.Fprintln(w, b)
		w.Flush()
	}
}
