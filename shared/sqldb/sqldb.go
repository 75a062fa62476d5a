// Package sqldb opens natter's databases (SQLite through modernc.org/sqlite,
// MySQL/MariaDB through go-sql-driver/mysql), applies versioned migrations at
// start and runs transactions that retry on deadlocks and busy errors.
//
// Both dialects use ? placeholders; where their SQL differs, callers branch on
// DB.Dialect in their one query file.
package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/natter-chat/natter/shared/backoff"
)

// Dialect says which database is behind a DB.
type Dialect int

// Dialects.
const (
	SQLite Dialect = iota + 1
	MySQL
)

func (d Dialect) String() string {
	switch d {
	case SQLite:
		return "sqlite"
	case MySQL:
		return "mysql"
	}
	return "unknown"
}

// DB is a database handle with its dialect. Its pools are its own: every
// query goes through one of its methods, which time it and count its
// errors (WithMetrics). Writes and transactions use the writer pool; reads
// outside a transaction (ReadQuery, ReadTx) the read pool (on MySQL the
// same pool; on SQLite a pool of read-only connections that read the last
// committed state while the single writer works).
//
// WithMetrics returns another view of the same database that reports to
// metrics; every view shares the pools and prepared statements.
type DB struct {
	w       *sql.DB // the writer pool (SQLite: one connection)
	r       *sql.DB // the read pool (MySQL: w)
	Dialect Dialect

	stmts  *sync.Map     // query text -> *sql.Stmt on the read pool (ReadQuery)
	wstmts *sync.Map     // query text -> *sql.Stmt on the writer pool (TxStmt)
	shared *sync.Map     // key -> value (Shared)
	ckpt   *checkpointer // SQLite: copies the WAL into the database file; nil on MySQL
	wal    *walSync      // SQLite: deferred commits and their syncs (InTxDeferred); nil on MySQL

	metrics *Metrics // nil: not observed
}

func newDB(w, r *sql.DB, d Dialect) *DB {
	return &DB{w: w, r: r, Dialect: d, stmts: new(sync.Map), wstmts: new(sync.Map), shared: new(sync.Map)}
}

// WithMetrics returns a view of db whose transactions, reads and ExecContext
// calls are timed and whose database errors are counted in m (nil: not
// observed). The view shares db's pools and prepared statements; closing
// either closes both. Each service of a process that shares one database
// takes a view of its own.
func (db *DB) WithMetrics(m *Metrics) *DB {
	v := *db
	v.metrics = m
	return &v
}

// Shared returns the value stored under key for this database, storing
// newValue() first if there is none: one value for every view of the
// database (WithMetrics), whoever asks first. A component whose state
// belongs to the database connection rather than to one user of it (what
// the one SQLite writer connection has written) keeps it here.
func (db *DB) Shared(key string, newValue func() any) any {
	if v, ok := db.shared.Load(key); ok {
		return v
	}
	v, _ := db.shared.LoadOrStore(key, newValue())
	return v
}

// Alive reports whether the database answers, for readiness checks: it
// pings the read pool, which on SQLite does not queue behind a long write
// transaction on the single writer connection (on MySQL it is the pool).
func (db *DB) Alive(ctx context.Context) error {
	if err := db.r.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", db.Dialect, err)
	}
	return nil
}

// ExecContext runs a write outside a transaction on the writer pool, observed (see
// WithMetrics); on SQLite durable before it returns, as InTx.
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	start := time.Now()
	var (
		res sql.Result
		err error
	)
	if db.wal != nil {
		var n uint64
		n, err = db.wal.commit(func() error {
			res, err = db.w.ExecContext(ctx, query, args...)
			return err
		})
		if err == nil {
			err = db.wal.syncTo(n)
		}
	} else {
		res, err = db.w.ExecContext(ctx, query, args...)
	}
	db.metrics.observe(opExec, start, err, kindDatabase)
	return res, err
}

// sqliteReaders is the size of SQLite's read-only pool.
const sqliteReaders = 4

// ReadQuery runs a fixed read query outside a transaction on the read
// pool, as a statement prepared once (parsing a statement costs more than
// running it on SQLite). query must be a constant: every distinct text is
// prepared and kept.
func (db *DB) ReadQuery(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	start := time.Now()
	var (
		rows *sql.Rows
		err  error
	)
	if st := db.readStmt(ctx, query); st != nil {
		rows, err = st.QueryContext(ctx, args...)
	} else {
		rows, err = db.r.QueryContext(ctx, query, args...)
	}
	db.metrics.observe(opRead, start, err, kindDatabase)
	return rows, err
}

// ReadQueryOnce runs a read query whose text is built for this call (a
// list of placeholders) outside a transaction on the read pool: observed
// like ReadQuery, but not prepared and kept.
func (db *DB) ReadQueryOnce(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	start := time.Now()
	rows, err := db.r.QueryContext(ctx, query, args...)
	db.metrics.observe(opRead, start, err, kindDatabase)
	return rows, err
}

// ReadQueryRow is ReadQuery for a single row.
func (db *DB) ReadQueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	start := time.Now()
	var row *sql.Row
	if st := db.readStmt(ctx, query); st != nil {
		row = st.QueryRowContext(ctx, args...)
	} else {
		row = db.r.QueryRowContext(ctx, query, args...)
	}
	if db.metrics != nil {
		db.metrics.observe(opRead, start, row.Err(), kindDatabase) // Err never is sql.ErrNoRows
	}
	return row
}

// ReadTx runs fn in a read-only transaction on the read pool: a
// consistent snapshot that, on SQLite, does not take the write lock.
func (db *DB) ReadTx(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	start := time.Now()
	fallback := ""
	defer func() { db.metrics.observe(opReadTx, start, err, fallback) }()
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		fallback = kindDatabase
		return fmt.Errorf("begin read: %w", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		fallback = kindDatabase
		return fmt.Errorf("commit read: %w", err)
	}
	return nil
}

// PrepareWrites prepares fixed queries on the writer pool for TxStmt. Call
// it outside any transaction (on SQLite the writer pool is one connection,
// which a transaction holds).
func (db *DB) PrepareWrites(ctx context.Context, queries ...string) error {
	for _, q := range queries {
		st, err := db.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		if _, loaded := db.wstmts.LoadOrStore(q, st); loaded {
			st.Close()
		}
	}
	return nil
}

// TxStmt returns a fixed query as a statement of tx: prepared once if
// PrepareWrites has it (SQLite parses a statement for every run
// otherwise), else prepared in tx now.
func (db *DB) TxStmt(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	if st, ok := db.wstmts.Load(query); ok {
		return tx.StmtContext(ctx, st.(*sql.Stmt)), nil
	}
	return tx.PrepareContext(ctx, query)
}

// PrepareReads prepares fixed queries on the read pool for ReadQuery and
// ReadTxStmt. Call it outside any read transaction.
func (db *DB) PrepareReads(ctx context.Context, queries ...string) error {
	for _, q := range queries {
		st, err := db.r.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		if _, loaded := db.stmts.LoadOrStore(q, st); loaded {
			st.Close()
		}
	}
	return nil
}

// ReadTxStmt returns a fixed query as a statement of tx, a ReadTx
// transaction: prepared once if PrepareReads (or an earlier ReadQuery) has
// it, else prepared in tx now (never on another connection of the pool,
// which the caller may be waiting for).
func (db *DB) ReadTxStmt(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	if st, ok := db.stmts.Load(query); ok {
		return tx.StmtContext(ctx, st.(*sql.Stmt)), nil
	}
	return tx.PrepareContext(ctx, query)
}

// readStmt returns query prepared on the read pool, or nil if it cannot
// be prepared now (the caller runs it unprepared, which reports the error).
func (db *DB) readStmt(ctx context.Context, query string) *sql.Stmt {
	if st, ok := db.stmts.Load(query); ok {
		return st.(*sql.Stmt)
	}
	st, err := db.r.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	if prev, loaded := db.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt)
	}
	return st
}

// Close closes the database (both pools).
func (db *DB) Close() error {
	if db.ckpt != nil {
		db.ckpt.close()
	}
	for _, m := range []*sync.Map{db.stmts, db.wstmts} {
		m.Range(func(_, st any) bool {
			st.(*sql.Stmt).Close()
			return true
		})
	}
	err := db.w.Close()
	if db.r != db.w {
		if rerr := db.r.Close(); err == nil {
			err = rerr
		}
	}
	return err
}

// writerCacheKiB is the page cache of SQLite's writer connection (the
// default is 2 MiB). A write transaction that dirties more pages than the
// cache holds spills them to the WAL before its commit and reads evicted
// pages back: a batch of 50 one-to-one messages to 50 inboxes touches
// about 150 pages of a database that outgrows 2 MiB within seconds. The
// cache only grows as pages are used.
const writerCacheKiB = 64 << 10

// checkpointEvery is how often the WAL is copied into the database file.
const checkpointEvery = 100 * time.Millisecond

// OpenSQLite opens (creating if needed) the SQLite database at path, in WAL
// mode, every commit synced to disk before it counts (InTx, ExecContext;
// InTxDeferred and SyncWAL: see durable.go), so a committed transaction
// survives a crash. SQLite has one writer at a time; the pool is a single
// connection, which keeps writers from fighting over the lock.
//
// The WAL is copied into the database file (checkpointed) by a goroutine
// of the DB's own, every checkpointEvery, on a connection of its own,
// instead of by the commit that happens to pass 1,000 WAL pages (SQLite's
// default): that commit, and every writer queued behind it, would wait
// for the copy and its fsync. A checkpoint never waits for the writer nor
// the writer for it; pages changed many times between two are copied
// once.
func OpenSQLite(path string) (*DB, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	// synchronous NORMAL: commits write the WAL, the sync follows outside
	// the connection (durable.go). cache_spill off: a transaction's pages
	// reach the WAL only at its commit, which walwrite_linux.go's one
	// write per commit relies on (a transaction larger than the cache
	// grows it instead).
	gatherWALWrites()
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)" +
		"&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)&_pragma=temp_store(MEMORY)&_txlock=immediate" +
		fmt.Sprintf("&_pragma=cache_size(%d)", -writerCacheKiB) + "&_pragma=cache_spill(0)&_pragma=wal_autocheckpoint(0)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// Readers: WAL lets them read the last commit while the writer writes,
	// so reads (a login's lists, an inbox fetch) do not queue behind write
	// transactions on the one writer connection.
	read, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s for reading: %w", path, err)
	}
	read.SetMaxOpenConns(sqliteReaders)
	read.SetMaxIdleConns(sqliteReaders)
	read.SetConnMaxLifetime(0)
	ckpt, err := startCheckpointer(path, checkpointEvery)
	if err != nil {
		db.Close()
		read.Close()
		return nil, err
	}
	out := newDB(db, read, SQLite)
	out.ckpt = ckpt
	out.wal = newWALSync(path)
	return out, nil
}

// checkpointer copies an SQLite database's WAL into the database file in
// the background (PRAGMA wal_checkpoint(PASSIVE): as far as no reader
// still needs, without waiting for anyone).
type checkpointer struct {
	conn *sql.DB
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func startCheckpointer(path string, every time.Duration) (*checkpointer, error) {
	// synchronous FULL: the WAL is synced before a checkpoint copies it,
	// the database file after.
	conn, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)")
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s for checkpoints: %w", path, err)
	}
	conn.SetMaxOpenConns(1)
	conn.SetMaxIdleConns(1)
	conn.SetConnMaxLifetime(0)
	c := &checkpointer{conn: conn, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run(every)
	return c, nil
}

func (c *checkpointer) run(every time.Duration) {
	defer close(c.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		// Errors (busy: another process checkpoints) are left for the
		// next tick; the writers never depend on a checkpoint.
		var busy, log, done int64
		_ = c.conn.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &done)
	}
}

// close stops the checkpoints; SQLite checkpoints what is left when the
// database's last connection closes.
func (c *checkpointer) close() {
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		c.conn.Close()
	})
}

// OpenMySQL opens a MySQL/MariaDB database from a go-sql-driver DSN
// (user:pass@tcp(host:port)/dbname). It forces utf8mb4, creates the database
// if it does not exist, and sizes the pool to maxConns. Unless the DSN says
// otherwise, query parameters are interpolated by the driver
// (interpolateParams=true, safe with utf8mb4): one round trip per statement
// instead of three (prepare, execute, close).
func OpenMySQL(ctx context.Context, dsn string, maxConns int) (*DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse mysql dsn: %w", err)
	}
	if cfg.DBName == "" {
		return nil, errors.New("mysql dsn names no database (want user@tcp(host:port)/dbname)")
	}
	cfg.Collation = "utf8mb4_unicode_ci"
	cfg.ParseTime = true
	cfg.MultiStatements = false
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["charset"] = "utf8mb4"
	if !strings.Contains(dsn, "interpolateParams=") {
		cfg.InterpolateParams = true
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if err := createMySQLDatabase(ctx, *cfg); err != nil {
		return nil, err
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("open mysql: %w", err)
	}
	if maxConns <= 0 {
		maxConns = 16
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxLifetime(30 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect mysql %s: %w", cfg.Addr, err)
	}
	return newDB(db, db, MySQL), nil
}

func createMySQLDatabase(ctx context.Context, cfg mysql.Config) error {
	name := cfg.DBName
	cfg.DBName = ""
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return fmt.Errorf("open mysql: %w", err)
	}
	defer db.Close()
	// A database name cannot be a placeholder; quote it as an identifier.
	q := "CREATE DATABASE IF NOT EXISTS " + QuoteIdent(name) +
		" CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// QuoteIdent quotes a MySQL identifier with backticks.
func QuoteIdent(name string) string {
	out := []byte{'`'}
	for i := 0; i < len(name); i++ {
		if name[i] == '`' {
			out = append(out, '`')
		}
		out = append(out, name[i])
	}
	return string(append(out, '`'))
}

// IsDuplicate reports whether err is a unique-key violation.
func IsDuplicate(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1062
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// IsFull reports whether err says the storage is full: SQLite's
// SQLITE_FULL (the disk, or max_page_count), ENOSPC from a write or a sync,
// MySQL's "table is full" (1114), "disk full" (1021), or a storage
// engine's or write's error 28 (ENOSPC; 1030, 3). The same write may
// succeed once space is freed.
func IsFull(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) {
		return true
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1114, 1021:
			return true
		case 1030, 3:
			return strings.Contains(me.Message, "28")
		}
		return false
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()&0xff == sqlite3.SQLITE_FULL
	}
	return false
}

// IsRetryable reports whether err is a transient conflict (deadlock, lock wait
// timeout, database busy) after which the whole transaction may be retried.
func IsRetryable(err error) bool {
	if errors.Is(err, ErrConflict) {
		return true
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1213 || me.Number == 1205
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	return false
}

// IsUnavailable reports whether err says the database could not be reached
// or did not answer in time (a restart, a network failure, a full pool), as
// opposed to a query the database refused: the request may succeed if
// retried later. IsRetryable conflicts count too.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if IsRetryable(err) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		// Server shutting down, too many connections, connection killed,
		// read-only (a failover in progress).
		switch me.Number {
		case 1053, 1040, 1927, 1290, 1836:
			return true
		}
	}
	return false
}

// ErrConflict is returned by a transaction's function that saw a
// concurrent change it cannot work with: InTx runs it again.
var ErrConflict = errors.New("concurrent change; retry")

// InTx runs fn in a transaction and commits it, retrying the whole
// transaction a few times when it fails with a retryable conflict. fn must
// be safe to run more than once.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return db.InTxOpts(ctx, nil, fn)
}

// InTxOpts is InTx with transaction options (an isolation level).
func (db *DB) InTxOpts(ctx context.Context, opts *sql.TxOptions, fn func(tx *sql.Tx) error) error {
	n, err := db.inTx(ctx, opts, fn)
	if err == nil && db.wal != nil {
		// SQLite: durable before it returns (see durable.go).
		if err = db.wal.syncTo(n); err != nil {
			err = fmt.Errorf("commit: %w", err)
		}
	}
	return err
}

// inTx is InTxOpts without the sync on SQLite; it returns the commit's
// number (walSync).
func (db *DB) inTx(ctx context.Context, opts *sql.TxOptions, fn func(tx *sql.Tx) error) (uint64, error) {
	start := time.Now()
	var err error
	// Jittered, so that two conflicting transactions do not retry in step;
	// the pauses add up to at least the 150 ms the unjittered ones did.
	b := backoff.New(20*time.Millisecond, 160*time.Millisecond)
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			db.metrics.retried()
			if !b.Wait(ctx, 0) {
				db.metrics.observe(opTx, start, ctx.Err(), "")
				return 0, ctx.Err()
			}
		}
		var (
			fallback string
			n        uint64
		)
		n, fallback, err = db.tryTx(ctx, opts, fn)
		if err == nil || !IsRetryable(err) || attempt == 4 {
			db.metrics.observe(opTx, start, err, fallback)
			return n, err
		}
		db.metrics.failed(opTx, err, fallback) // a conflict, retried
	}
	return 0, err
}

// tryTx runs one attempt of a transaction and returns its commit's number
// (SQLite; 0 on MySQL). fallback is the error kind to count when the
// error is not recognized as a database one: begin and commit errors are
// the database's, fn's own errors may be the caller's.
func (db *DB) tryTx(ctx context.Context, opts *sql.TxOptions, fn func(tx *sql.Tx) error) (n uint64, fallback string, err error) {
	tx, err := db.w.BeginTx(ctx, opts)
	if err != nil {
		return 0, kindDatabase, fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return 0, "", err
	}
	if db.wal != nil {
		n, err = db.wal.commit(tx.Commit)
	} else {
		err = tx.Commit()
	}
	if err != nil {
		return 0, kindDatabase, fmt.Errorf("commit: %w", err)
	}
	return n, "", nil
}

// Placeholders returns "?,?,...,?" with n marks.
func Placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	b := make([]byte, 0, 2*n)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '?')
	}
	return string(b)
}

func nowMillis() int64 { return time.Now().UnixMilli() }

// FreeBytes returns the space left on the filesystem of an SQLite
// database (what an unprivileged writer may still use); ok is false on
// MySQL, whose disk is the server's, or where the system does not say.
func (db *DB) FreeBytes() (free uint64, ok bool) {
	if db.wal == nil {
		return 0, false
	}
	free, err := freeBytes(db.wal.path)
	return free, err == nil
}
