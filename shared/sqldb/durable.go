package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"
)

// Commits that do not wait for the disk (SQLite).
//
// With synchronous=FULL a commit writes the transaction's pages to the WAL
// and then fsyncs it, holding the one writer connection, and every writer
// queued behind it, for the fsync. InTxDeferred commits with
// synchronous=NORMAL: the pages are written to the WAL, not synced, and
// SyncWAL syncs the WAL afterwards, outside the connection. Until SyncWAL
// returns, such a commit may be lost in a crash (never torn: SQLite's WAL
// checksums leave a partly written commit out); once it has returned, the
// commit is as durable as with FULL, whose only difference in WAL mode is
// that sync after every commit. So a writer runs its next transaction
// while the last one's sync runs, and one sync covers every commit before
// it.
//
// Readers may see a commit before it is synced. A reader that hands out
// what it read as stored calls WaitDurable inside its read transaction,
// after its first read: every commit its snapshot can hold is synced when
// WaitDurable returns.

// walSync counts the deferred commits of one SQLite database and syncs
// its WAL file.
type walSync struct {
	path string // the -wal file
	mu   sync.Mutex
	cond *sync.Cond // broadcast when done or synced moves
	// begun counts deferred commits started (before COMMIT), done those
	// finished, committed or failed; synced is the highest done count a
	// sync started after.
	begun, done, synced uint64
	syncing             bool
	syncs               uint64 // syncs of the WAL file done
}

func newWALSync(dbPath string) *walSync {
	w := &walSync{path: dbPath + "-wal"}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// commit runs commit, counted as a deferred commit.
func (w *walSync) commit(commit func() error) error {
	w.mu.Lock()
	w.begun++
	w.mu.Unlock()
	err := commit()
	w.mu.Lock()
	w.done++
	w.cond.Broadcast()
	w.mu.Unlock()
	return err
}

// syncTo returns once every deferred commit up to number target is synced
// (target <= done), syncing the WAL unless a sync that started late enough
// is running; concurrent callers share syncs.
func (w *walSync) syncTo(target uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.synced < target {
		if w.syncing {
			w.cond.Wait()
			continue
		}
		w.syncing = true
		upTo := w.done
		w.mu.Unlock()
		err := datasync(w.path)
		w.mu.Lock()
		w.syncing = false
		w.syncs++
		if err == nil && upTo > w.synced {
			w.synced = upTo
		}
		w.cond.Broadcast()
		if err != nil {
			return err
		}
	}
	return nil
}

// sync syncs every deferred commit finished so far.
func (w *walSync) sync() error {
	w.mu.Lock()
	target := w.done
	w.mu.Unlock()
	return w.syncTo(target)
}

// waitDurable syncs every deferred commit started so far, once it has
// finished.
func (w *walSync) waitDurable() error {
	w.mu.Lock()
	target := w.begun
	for w.done < target {
		w.cond.Wait()
	}
	w.mu.Unlock()
	return w.syncTo(target)
}

// datasync flushes the file at path (its data, and its size) to disk. A
// WAL file that is not there holds nothing to sync.
func datasync(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sync wal: %w", err)
	}
	defer f.Close()
	if err := fdatasync(f); err != nil {
		return fmt.Errorf("sync wal: %w", err)
	}
	return nil
}

// InTxDeferred runs fn in a transaction like InTx; on SQLite the commit
// does not wait for the disk (see SyncWAL). On MySQL it is InTx: commits
// are durable when they return.
func (db *DB) InTxDeferred(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if db.wal == nil {
		return db.InTx(ctx, fn)
	}
	start := time.Now()
	// The one writer connection, held for the pragma, the transaction and
	// the pragma back: no other transaction runs without its fsync.
	conn, err := db.DB.Conn(ctx)
	if err != nil {
		err = fmt.Errorf("begin: %w", err)
		db.metrics.observe(opTx, start, err, kindDatabase)
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous=NORMAL"); err != nil {
		err = fmt.Errorf("begin: %w", err)
		db.metrics.observe(opTx, start, err, kindDatabase)
		return err
	}
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous=FULL"); err != nil {
			// Not back to the pool without its fsync on commit: the
			// connection is dropped.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			db.metrics.retried()
			select {
			case <-ctx.Done():
				db.metrics.observe(opTx, start, ctx.Err(), "")
				return ctx.Err()
			case <-time.After(time.Duration(attempt*attempt) * 5 * time.Millisecond):
			}
		}
		var fallback string
		fallback, err = db.tryDeferred(ctx, conn, fn)
		if err == nil || !IsRetryable(err) || attempt == 4 {
			db.metrics.observe(opTx, start, err, fallback)
			return err
		}
		db.metrics.failed(opTx, err, fallback)
	}
}

// tryDeferred is one attempt of InTxDeferred on conn.
func (db *DB) tryDeferred(ctx context.Context, conn *sql.Conn, fn func(tx *sql.Tx) error) (fallback string, err error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return kindDatabase, fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return "", err
	}
	if err := db.wal.commit(tx.Commit); err != nil {
		return kindDatabase, fmt.Errorf("commit: %w", err)
	}
	return "", nil
}

// SyncWAL makes every InTxDeferred commit finished so far durable (SQLite:
// syncs the WAL file; concurrent calls share syncs). On MySQL it does
// nothing.
func (db *DB) SyncWAL() error {
	if db.wal == nil {
		return nil
	}
	return db.wal.sync()
}

// WaitDurable returns once every InTxDeferred commit started so far is
// durable, syncing the WAL if no sync covers them yet. Called in a read
// transaction after its first read, it makes sure everything the
// transaction reads is durable. On MySQL it does nothing.
func (db *DB) WaitDurable() error {
	if db.wal == nil {
		return nil
	}
	return db.wal.waitDurable()
}

// WALSyncs is how many times SyncWAL and WaitDurable synced the WAL file
// (fewer than the deferred commits when syncs are shared); 0 on MySQL.
func (db *DB) WALSyncs() uint64 {
	if db.wal == nil {
		return 0
	}
	db.wal.mu.Lock()
	defer db.wal.mu.Unlock()
	return db.wal.syncs
}
