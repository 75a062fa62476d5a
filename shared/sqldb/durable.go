package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
)

// Commits and the disk (SQLite).
//
// SQLite with synchronous=FULL writes a commit's pages to the WAL and then
// fsyncs it, holding the one writer connection, and every writer queued
// behind it, for the fsync. Here the writer connection runs with
// synchronous=NORMAL (the pages are written to the WAL, not synced) and
// the WAL is synced (fdatasync) after the commit, outside the connection:
// InTx, InTxOpts and ExecContext sync before they return, so they are as
// durable as with FULL, whose only difference in WAL mode is that sync
// after every commit; InTxDeferred returns without it, and its caller
// syncs with SyncWAL before it treats the commit as durable. A writer
// thus runs its next transaction while the last one's sync runs, and one
// sync covers every commit before it. Until then a crash may take a
// commit back whole, never in part (SQLite's WAL checksums leave a partly
// written commit out). Every write on SQLite goes through those methods,
// never through the embedded *sql.DB's own.
//
// Readers may see a commit before it is synced. A reader that hands out
// what it read as stored calls WaitDurable inside its read transaction,
// after its first read: every commit its snapshot can hold is synced when
// WaitDurable returns.

// walSync counts the commits of one SQLite database and syncs its WAL
// file.
type walSync struct {
	path string // the -wal file
	mu   sync.Mutex
	cond *sync.Cond // broadcast when done or synced moves
	// begun counts commits started (before COMMIT), done those finished,
	// committed or failed; synced is the highest done count a sync
	// started after.
	begun, done, synced uint64
	syncing             bool
	syncs               uint64 // syncs of the WAL file done
	// failed is the highest done count a failed sync started after:
	// waitSynced gives up on those commits (their callers answer errors).
	failed uint64
}

func newWALSync(dbPath string) *walSync {
	w := &walSync{path: dbPath + "-wal"}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// commit runs commit, counted, and returns the done count after it: the
// commit is durable once synced reaches it.
func (w *walSync) commit(commit func() error) (uint64, error) {
	w.mu.Lock()
	w.begun++
	w.mu.Unlock()
	err := commit()
	w.mu.Lock()
	w.done++
	n := w.done
	w.cond.Broadcast()
	w.mu.Unlock()
	return n, err
}

// waitSynced returns once a sync has covered commit number n (or failed
// to), without syncing itself.
func (w *walSync) waitSynced(n uint64) {
	w.mu.Lock()
	for w.synced < n && w.failed < n {
		w.cond.Wait()
	}
	w.mu.Unlock()
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
		if err != nil && upTo > w.failed {
			w.failed = upTo
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
// does not wait for the disk: it is durable once a SyncWAL that started
// after it returns. It returns the commit's number for WaitSynced. On
// MySQL it is InTx (commits are durable when they return) and the number
// is 0.
func (db *DB) InTxDeferred(ctx context.Context, fn func(tx *sql.Tx) error) (uint64, error) {
	if db.wal == nil {
		return 0, db.InTx(ctx, fn)
	}
	return db.inTx(ctx, nil, fn)
}

// Commits returns the number of the last commit finished (see
// WaitSynced); 0 on MySQL.
func (db *DB) Commits() uint64 {
	if db.wal == nil {
		return 0
	}
	db.wal.mu.Lock()
	defer db.wal.mu.Unlock()
	return db.wal.done
}

// WaitSynced returns once a sync has made commit number n (InTxDeferred's,
// or Commits') durable; it does not sync itself. On MySQL it returns at
// once.
func (db *DB) WaitSynced(n uint64) {
	if db.wal != nil {
		db.wal.waitSynced(n)
	}
}

// SyncWAL makes every commit finished so far durable (SQLite: syncs the
// WAL file; concurrent calls share syncs). On MySQL it does nothing.
func (db *DB) SyncWAL() error {
	if db.wal == nil {
		return nil
	}
	return db.wal.sync()
}

// WaitDurable returns once every commit started so far is durable,
// syncing the WAL if no sync covers them yet. Called in a read
// transaction after its first read, it makes sure everything the
// transaction reads is durable. On MySQL it does nothing.
func (db *DB) WaitDurable() error {
	if db.wal == nil {
		return nil
	}
	return db.wal.waitDurable()
}

// WALSyncs is how many times the WAL file was synced (fewer than the
// commits when syncs are shared); 0 on MySQL.
func (db *DB) WALSyncs() uint64 {
	if db.wal == nil {
		return 0
	}
	db.wal.mu.Lock()
	defer db.wal.mu.Unlock()
	return db.wal.syncs
}
