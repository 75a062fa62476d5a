package inbox

// Every SQL statement of the offline service is in this file. All values are
// bound as parameters; only row lists ("(?,?),(?,?)") are built in code.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/sqldb"
)

const (
	// mysqlChunkRows bounds the rows of one multi-row statement on MySQL.
	mysqlChunkRows = 500
	// mysqlChunkBytes bounds the message bodies in one multi-row INSERT on
	// MySQL, well under its default max_allowed_packet (16 MiB).
	mysqlChunkBytes = 4 << 20
)

// sqliteChunks are the row counts SQLite's multi-row statements are
// prepared for, largest first: n rows run as the fewest of them that add
// up to n (50 = 32 + 16 + 2). Parsing a statement costs SQLite more than
// running it, so nothing on the write path is parsed per transaction.
var sqliteChunks = []int{128, 32, 16, 8, 4, 2, 1}

// migrations is the schema of the offline component.
//
// Version 1 stored every message once in messages (with indexes on its
// mid, its (sender, cid) and its creation time) and one inbox row per
// recipient (with indexes on its mid and creation time): about eight
// B-tree entries per one-to-one message.
//
// Version 2 writes one entry per recipient and nothing else per message:
//
//   - inbox_entries: one row per recipient and seq. A one-to-one message
//     is stored inline in its recipient's row (mid, sender, cid, body); a
//     group message's row points at its body (body_id). On SQLite the rows
//     are appended in commit order (rowid) and found by an index on
//     (user_id, seq); on MySQL they are clustered by (user_id, seq).
//   - bodies: a group message, stored once, with the number of entries
//     that point at it (refs).
//   - A unique index on (sender_id, cid) of each (SQLite: partial, over
//     the rows with a cid) is the dedupe: a cid is stored once per sender
//     among one-to-one messages and once among group messages, as long as
//     the message is kept. cid compares byte for byte.
//   - inbox_state: each inbox's last assigned and acknowledged seq.
//   - inbox_prune: each inbox's prune watermark: entries up to pruned_seq
//     are deleted; entries up to mark_seq were acknowledged at mark_at and
//     are deleted once that is older than the retention. No index on any
//     time: a prune walks inbox_prune and inbox_state, not the entries.
//
// Why this layout on SQLite: a commit writes every page it changed to the
// WAL, and a batch of one-to-one messages to n inboxes changes at least n
// leaves of any index ordered by inbox. With the entries in a WITHOUT
// ROWID table clustered by (user_id, seq), whole rows also sit in its
// interior pages; appending rows and indexing them by (user_id, seq) keeps
// that to one small index leaf per inbox (measured: 3.1 WAL frames per
// message with a separate dedupe table and clustered entries, see
// docs/benchmarks.md).
//
// The migration keeps every entry, body and cid of version 1. Its
// statements can run again after a start-up that died half-way (MySQL
// DDL is not transactional): the version 1 tables are declared again
// before they are read, and dropped last.
func migrations() []sqldb.Migration {
	v1SQLite := []string{
		`CREATE TABLE IF NOT EXISTS messages (
			mid CHAR(36) NOT NULL PRIMARY KEY,
			sender_id INTEGER NOT NULL CHECK (sender_id > 0),
			cid VARCHAR(64) NULL,
			body TEXT NOT NULL,
			created_at INTEGER NOT NULL,
			UNIQUE (sender_id, cid)
		)`,
		`CREATE INDEX IF NOT EXISTS messages_created ON messages (created_at)`,
		`CREATE TABLE IF NOT EXISTS inbox (
			user_id INTEGER NOT NULL,
			seq INTEGER NOT NULL,
			mid CHAR(36) NOT NULL,
			created_at INTEGER NOT NULL,
			PRIMARY KEY (user_id, seq)
		) WITHOUT ROWID`,
		`CREATE INDEX IF NOT EXISTS inbox_mid ON inbox (mid)`,
		`CREATE INDEX IF NOT EXISTS inbox_created ON inbox (created_at)`,
	}
	v1MySQL := []string{
		`CREATE TABLE IF NOT EXISTS messages (
			mid CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
			sender_id BIGINT NOT NULL,
			cid VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
			body MEDIUMTEXT NOT NULL,
			created_at BIGINT NOT NULL,
			PRIMARY KEY (mid),
			UNIQUE KEY messages_sender_cid (sender_id, cid),
			KEY messages_created (created_at),
			CONSTRAINT messages_sender_positive CHECK (sender_id > 0)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		`CREATE TABLE IF NOT EXISTS inbox (
			user_id BIGINT NOT NULL,
			seq BIGINT NOT NULL,
			mid CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
			created_at BIGINT NOT NULL,
			PRIMARY KEY (user_id, seq),
			KEY inbox_mid (mid),
			KEY inbox_created (created_at)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	}
	return []sqldb.Migration{{
		Version: 1,
		SQLite: append(v1SQLite, `CREATE TABLE IF NOT EXISTS inbox_state (
				user_id INTEGER NOT NULL PRIMARY KEY,
				last_seq INTEGER NOT NULL DEFAULT 0,
				acked_seq INTEGER NOT NULL DEFAULT 0
			)`),
		MySQL: append(v1MySQL, `CREATE TABLE IF NOT EXISTS inbox_state (
				user_id BIGINT NOT NULL,
				last_seq BIGINT NOT NULL DEFAULT 0,
				acked_seq BIGINT NOT NULL DEFAULT 0,
				PRIMARY KEY (user_id)
			) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`),
	}, {
		Version: 2,
		SQLite: append(v1SQLite,
			`CREATE TABLE IF NOT EXISTS inbox_entries (
				id INTEGER NOT NULL PRIMARY KEY,
				user_id INTEGER NOT NULL,
				seq INTEGER NOT NULL,
				mid BLOB NULL,
				sender_id INTEGER NULL CHECK (sender_id > 0),
				cid TEXT NULL,
				body TEXT NULL,
				body_id INTEGER NULL,
				CHECK ((body IS NULL) <> (body_id IS NULL))
			)`,
			`CREATE UNIQUE INDEX IF NOT EXISTS inbox_entries_seq ON inbox_entries (user_id, seq)`,
			`CREATE UNIQUE INDEX IF NOT EXISTS inbox_entries_cid ON inbox_entries (sender_id, cid) WHERE cid IS NOT NULL`,
			`CREATE TABLE IF NOT EXISTS bodies (
				id INTEGER NOT NULL PRIMARY KEY,
				mid BLOB NOT NULL,
				sender_id INTEGER NOT NULL CHECK (sender_id > 0),
				cid TEXT NULL,
				body TEXT NOT NULL,
				refs INTEGER NOT NULL
			)`,
			`CREATE UNIQUE INDEX IF NOT EXISTS bodies_cid ON bodies (sender_id, cid) WHERE cid IS NOT NULL`,
			`CREATE TABLE IF NOT EXISTS inbox_prune (
				user_id INTEGER NOT NULL PRIMARY KEY,
				pruned_seq INTEGER NOT NULL,
				mark_seq INTEGER NOT NULL,
				mark_at INTEGER NOT NULL
			)`,
			// Version 1's data: a message with more than one entry left
			// becomes a body, the others are inlined.
			`CREATE INDEX IF NOT EXISTS bodies_mid_migrate ON bodies (mid)`,
			`INSERT INTO bodies (mid, sender_id, cid, body, refs)
				SELECT unhex(replace(m.mid, '-', '')), m.sender_id, m.cid, m.body, c.n
				FROM messages m JOIN (SELECT mid, COUNT(*) AS n FROM inbox GROUP BY mid HAVING COUNT(*) > 1) c
					ON c.mid = m.mid
				WHERE NOT EXISTS (SELECT 1 FROM bodies b WHERE b.mid = unhex(replace(m.mid, '-', '')))`,
			`INSERT OR IGNORE INTO inbox_entries (user_id, seq, mid, sender_id, cid, body, body_id)
				SELECT i.user_id, i.seq,
					CASE WHEN b.id IS NULL THEN unhex(replace(m.mid, '-', '')) END,
					CASE WHEN b.id IS NULL THEN m.sender_id END,
					CASE WHEN b.id IS NULL THEN m.cid END,
					CASE WHEN b.id IS NULL THEN m.body END,
					b.id
				FROM inbox i JOIN messages m ON m.mid = i.mid
				LEFT JOIN bodies b ON b.mid = unhex(replace(i.mid, '-', ''))
				ORDER BY i.mid, i.user_id`,
			`DROP INDEX IF EXISTS bodies_mid_migrate`,
			`DROP TABLE IF EXISTS inbox`,
			`DROP TABLE IF EXISTS messages`,
		),
		MySQL: append(v1MySQL,
			`CREATE TABLE IF NOT EXISTS inbox_entries (
				user_id BIGINT NOT NULL,
				seq BIGINT NOT NULL,
				mid BINARY(16) NULL,
				sender_id BIGINT NULL,
				cid VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
				body MEDIUMTEXT NULL,
				body_id BIGINT NULL,
				PRIMARY KEY (user_id, seq),
				UNIQUE KEY inbox_entries_cid (sender_id, cid),
				CONSTRAINT inbox_entries_sender_positive CHECK (sender_id > 0),
				CONSTRAINT inbox_entries_one_body CHECK ((body IS NULL) <> (body_id IS NULL))
			) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
			`CREATE TABLE IF NOT EXISTS bodies (
				id BIGINT NOT NULL AUTO_INCREMENT,
				mid BINARY(16) NOT NULL,
				sender_id BIGINT NOT NULL,
				cid VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
				body MEDIUMTEXT NOT NULL,
				refs BIGINT NOT NULL,
				PRIMARY KEY (id),
				UNIQUE KEY bodies_cid (sender_id, cid),
				CONSTRAINT bodies_sender_positive CHECK (sender_id > 0)
			) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
			`CREATE TABLE IF NOT EXISTS inbox_prune (
				user_id BIGINT NOT NULL,
				pruned_seq BIGINT NOT NULL,
				mark_seq BIGINT NOT NULL,
				mark_at BIGINT NOT NULL,
				PRIMARY KEY (user_id)
			) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
			`CREATE INDEX IF NOT EXISTS bodies_mid_migrate ON bodies (mid)`,
			`INSERT INTO bodies (mid, sender_id, cid, body, refs)
				SELECT UNHEX(REPLACE(m.mid, '-', '')), m.sender_id, m.cid, m.body, c.n
				FROM messages m JOIN (SELECT mid, COUNT(*) AS n FROM inbox GROUP BY mid HAVING COUNT(*) > 1) c
					ON c.mid = m.mid
				WHERE NOT EXISTS (SELECT 1 FROM bodies b WHERE b.mid = UNHEX(REPLACE(m.mid, '-', '')))`,
			`INSERT IGNORE INTO inbox_entries (user_id, seq, mid, sender_id, cid, body, body_id)
				SELECT i.user_id, i.seq,
					CASE WHEN b.id IS NULL THEN UNHEX(REPLACE(m.mid, '-', '')) END,
					CASE WHEN b.id IS NULL THEN m.sender_id END,
					CASE WHEN b.id IS NULL THEN m.cid END,
					CASE WHEN b.id IS NULL THEN m.body END,
					b.id
				FROM inbox i JOIN messages m ON m.mid = i.mid
				LEFT JOIN bodies b ON b.mid = UNHEX(REPLACE(i.mid, '-', ''))`,
			`DROP INDEX IF EXISTS bodies_mid_migrate ON bodies`,
			`DROP TABLE IF EXISTS inbox`,
			`DROP TABLE IF EXISTS messages`,
		),
	}, {
		// Version 3 counts each inbox's bytes, for the limits on what an
		// inbox holds unacknowledged: inbox_state.bytes is the sum of the
		// bodies of every entry ever stored in the inbox, acked_bytes that
		// sum up to the acknowledged seq, and each entry keeps the sum up
		// to itself (cum_bytes), which an ack copies into acked_bytes. No
		// count per store: unacknowledged entries are last_seq - acked_seq,
		// their bytes bytes - acked_bytes. Entries stored before version 3
		// count 0 bytes.
		Version: 3,
		SQLite: []string{
			`ALTER TABLE inbox_entries ADD COLUMN cum_bytes INTEGER NOT NULL DEFAULT 0`,
			`ALTER TABLE inbox_state ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0`,
			`ALTER TABLE inbox_state ADD COLUMN acked_bytes INTEGER NOT NULL DEFAULT 0`,
		},
		MySQL: []string{
			`ALTER TABLE inbox_entries ADD COLUMN cum_bytes BIGINT NOT NULL DEFAULT 0`,
			`ALTER TABLE inbox_state ADD COLUMN bytes BIGINT NOT NULL DEFAULT 0, ADD COLUMN acked_bytes BIGINT NOT NULL DEFAULT 0`,
		},
	}}
}

// rowsStmt is a statement over a list of rows: head, then the row group
// ("(?,?)") once per row, comma-separated, then tail.
type rowsStmt struct {
	head, group, tail string
	width             int // placeholders per row
}

func (r rowsStmt) text(n int) string {
	var b strings.Builder
	b.WriteString(r.head)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.group)
	}
	b.WriteString(r.tail)
	return b.String()
}

// skipConflicts is the insert r that skips (SQLite: ON CONFLICT DO
// NOTHING) a row whose unique key is stored already.
func (r rowsStmt) skipConflicts() rowsStmt {
	r.tail += " ON CONFLICT DO NOTHING"
	return r
}

// The multi-row statements. SQLite prepares them once for each of
// sqliteChunks; MySQL gets their text for each chunk (its parameters are
// interpolated by the driver: one round trip each, nothing to prepare).
var (
	// insertEntriesMySQL inserts inbox entries (user_id, seq, mid,
	// sender_id, cid, body, body_id, cum_bytes); a stored cid fails it.
	insertEntriesMySQL = rowsStmt{
		head:  "INSERT INTO inbox_entries (user_id, seq, mid, sender_id, cid, body, body_id, cum_bytes) VALUES ",
		group: "(?,?,?,?,?,?,?,?)", width: 8,
	}
	// insertEntriesSQLite skips a row whose cid is stored already: the
	// writer counts the rows inserted.
	insertEntriesSQLite = insertEntriesMySQL.skipConflicts()
	// insertGroupEntriesSQLite and insertGroupEntriesMySQL insert the
	// entries of group messages: user_id, seq, body_id, cum_bytes (nothing
	// else to bind); SQLite skips a seq stored already (the writer counts).
	insertGroupEntriesMySQL = rowsStmt{
		head:  "INSERT INTO inbox_entries (user_id, seq, body_id, cum_bytes) VALUES ",
		group: "(?,?,?,?)", width: 4,
	}
	insertGroupEntriesSQLite = insertGroupEntriesMySQL.skipConflicts()
	// insertBodiesSQLite inserts group bodies with the ids the writer
	// chose (id, mid, sender_id, cid, body, refs), skipping a body whose
	// cid is stored already.
	insertBodiesSQLite = rowsStmt{
		head:  "INSERT INTO bodies (id, mid, sender_id, cid, body, refs) VALUES ",
		group: "(?,?,?,?,?,?)", width: 6,
	}.skipConflicts()
	// lookupEntryCIDsMySQL and lookupBodyCIDsMySQL return the stored
	// one-to-one and group messages among (sender_id, cid) pairs.
	lookupEntryCIDsMySQL = rowsStmt{
		head:  "SELECT sender_id, cid, mid FROM inbox_entries WHERE (sender_id, cid) IN (",
		group: "(?,?)", width: 2, tail: ")",
	}
	lookupBodyCIDsMySQL = rowsStmt{
		head:  "SELECT sender_id, cid, mid FROM bodies WHERE (sender_id, cid) IN (",
		group: "(?,?)", width: 2, tail: ")",
	}
	// setLastSQLite writes each inbox's last seq and bytes: user_id,
	// last_seq, bytes.
	setLastSQLite = rowsStmt{
		head:  "INSERT INTO inbox_state (user_id, last_seq, bytes) VALUES ",
		group: "(?,?,?)", width: 3,
		tail: " ON CONFLICT (user_id) DO UPDATE SET last_seq = excluded.last_seq, bytes = excluded.bytes",
	}
	// addLastMySQL advances each inbox's last seq by a count, creating the
	// inbox (row-locked from here to the commit, in the order of the rows:
	// ascending user ids): user_id, count. INSERT ... ON DUPLICATE KEY
	// UPDATE takes the exclusive lock at once (INSERT IGNORE would take a
	// shared one first, and two transactions upgrading deadlock).
	addLastMySQL = rowsStmt{
		head:  "INSERT INTO inbox_state (user_id, last_seq, bytes) VALUES ",
		group: "(?,?,?)", width: 3,
		tail: " ON DUPLICATE KEY UPDATE last_seq = last_seq + VALUES(last_seq), bytes = bytes + VALUES(bytes)",
	}
	// addLastReturning is addLastMySQL answering each inbox's new state
	// (MariaDB).
	addLastReturning = rowsStmt{
		head: addLastMySQL.head, group: addLastMySQL.group, width: addLastMySQL.width,
		tail: addLastMySQL.tail + " RETURNING user_id, last_seq, acked_seq, bytes, acked_bytes",
	}
	// readLastMySQL reads the state of inboxes this transaction holds.
	readLastMySQL = rowsStmt{
		head:  "SELECT user_id, last_seq, acked_seq, bytes, acked_bytes FROM inbox_state WHERE user_id IN (",
		group: "?", width: 1, tail: ") FOR UPDATE",
	}
	// ackSQLite raises acknowledged seqs (user_id, seq) and sets
	// acked_bytes to the byte sum of the entry at the new acknowledged seq
	// (unchanged when that entry is pruned: the seq did not move). It
	// answers each inbox's new acknowledged state, for the writer's memory.
	ackSQLite = rowsStmt{
		head: "UPDATE inbox_state SET acked_seq = MAX(acked_seq, MIN(a.column2, last_seq)), " +
			"acked_bytes = COALESCE((SELECT e.cum_bytes FROM inbox_entries e WHERE e.user_id = inbox_state.user_id " +
			"AND e.seq = MAX(inbox_state.acked_seq, MIN(a.column2, inbox_state.last_seq))), acked_bytes) FROM (VALUES ",
		group: "(?,?)", width: 2,
		tail: ") AS a WHERE inbox_state.user_id = a.column1 RETURNING inbox_state.user_id, acked_seq, acked_bytes",
	}
)

// The single statements.
const (
	// SQLite: has another connection (another process) committed since
	// the last call on this connection?
	dataVersionSQLite = "PRAGMA data_version"
	// SQLite: the last seqs of inboxes the writer does not remember, given
	// a JSON array of user ids.
	readLastSQLite = "SELECT user_id, last_seq, acked_seq, bytes, acked_bytes FROM inbox_state WHERE user_id IN (SELECT value FROM json_each(?))"
	// SQLite: the highest body id, when the writer does not remember it.
	maxBodySQLite = "SELECT COALESCE(MAX(id), 0) FROM bodies"
	// The mid of the one-to-one and the group message stored under a
	// (sender, cid).
	lookupEntryCID = "SELECT mid FROM inbox_entries WHERE sender_id = ? AND cid = ?"
	lookupBodyCID  = "SELECT mid FROM bodies WHERE sender_id = ? AND cid = ?"
	// MySQL: one group body; its id is the insert id.
	insertBodyMySQL = "INSERT INTO bodies (mid, sender_id, cid, body, refs) VALUES (?,?,?,?,?)"
)

// prepare prepares the write path's statements on SQLite; on MySQL it
// finds out whether the server answers INSERT ... RETURNING.
func (s *Store) prepare(ctx context.Context) error {
	if s.db.Dialect != sqldb.SQLite {
		var err error
		s.returning, err = s.hasReturning(ctx)
		return err
	}
	qs := []string{dataVersionSQLite, readLastSQLite, maxBodySQLite, lookupEntryCID, lookupBodyCID}
	for _, st := range []rowsStmt{insertEntriesSQLite, insertGroupEntriesSQLite, insertBodiesSQLite, setLastSQLite, ackSQLite} {
		for _, n := range sqliteChunks {
			qs = append(qs, st.text(n))
		}
	}
	if err := s.db.PrepareWrites(ctx, qs...); err != nil {
		return err
	}
	return s.db.PrepareReads(ctx, selectStateQuery, selectEntriesQuery, selectEntriesLimitQuery)
}

// chunks calls fn with consecutive [lo, hi) ranges of n rows: on SQLite of
// the prepared sizes, on MySQL of at most mysqlChunkRows rows and, with
// size, mysqlChunkBytes bytes (at least one row).
func (s *Store) chunks(n int, size func(i int) int, fn func(lo, hi int) error) error {
	for lo := 0; lo < n; {
		hi := lo
		if s.db.Dialect == sqldb.SQLite {
			for _, c := range sqliteChunks {
				if c <= n-lo {
					hi = lo + c
					break
				}
			}
		} else {
			bytes := 0
			for hi < n && hi-lo < mysqlChunkRows {
				if size != nil {
					if bytes += size(hi); hi > lo && bytes > mysqlChunkBytes {
						break
					}
				}
				hi++
			}
		}
		if err := fn(lo, hi); err != nil {
			return err
		}
		lo = hi
	}
	return nil
}

// execRows runs st over rows (args holds st.width values per row) in
// chunks and returns the rows it affected; size, if not nil, is the byte
// size of row i.
func (s *Store) execRows(ctx context.Context, tx *sql.Tx, st rowsStmt, args []any, size func(i int) int) (int64, error) {
	var affected int64
	err := s.chunks(len(args)/st.width, size, func(lo, hi int) error {
		ws, err := s.writeStmt(ctx, tx, st.text(hi-lo))
		if err != nil {
			return err
		}
		res, err := ws.exec(ctx, args[lo*st.width:hi*st.width]...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		affected += n
		return err
	})
	return affected, err
}

// queryRows is execRows for a statement that returns rows, each passed to
// scan.
func (s *Store) queryRows(ctx context.Context, tx *sql.Tx, st rowsStmt, args []any, scan func(*sql.Rows) error) error {
	return s.chunks(len(args)/st.width, nil, func(lo, hi int) error {
		ws, err := s.writeStmt(ctx, tx, st.text(hi-lo))
		if err != nil {
			return err
		}
		rows, err := ws.query(ctx, args[lo*st.width:hi*st.width]...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}

// queryOne runs a single-row query of the write path in tx (prepared on
// SQLite).
func (s *Store) queryOne(ctx context.Context, tx *sql.Tx, query string, args []any, dest ...any) error {
	ws, err := s.writeStmt(ctx, tx, query)
	if err != nil {
		return err
	}
	return ws.queryRow(ctx, args...).Scan(dest...)
}

// writeStmt is a statement of the write path in tx: on SQLite the fixed
// query prepared once on the writer pool (sqldb.DB.TxStmt); on MySQL the
// query text, whose parameters the driver interpolates (one round trip,
// nothing to prepare).
func (s *Store) writeStmt(ctx context.Context, tx *sql.Tx, query string) (txStmt, error) {
	if s.db.Dialect != sqldb.SQLite {
		return txStmt{tx: tx, text: query}, nil
	}
	ps, err := s.db.TxStmt(ctx, tx, query)
	return txStmt{ps: ps}, err
}

// txStmt runs a query of a transaction: ps if prepared, else text in tx.
type txStmt struct {
	ps   *sql.Stmt
	tx   *sql.Tx
	text string
}

func (t txStmt) exec(ctx context.Context, args ...any) (sql.Result, error) {
	if t.ps != nil {
		return t.ps.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, t.text, args...)
}

func (t txStmt) query(ctx context.Context, args ...any) (*sql.Rows, error) {
	if t.ps != nil {
		return t.ps.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, t.text, args...)
}

func (t txStmt) queryRow(ctx context.Context, args ...any) *sql.Row {
	if t.ps != nil {
		return t.ps.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, t.text, args...)
}

// dataVersion reads SQLite's data_version on the writer connection.
func (s *Store) dataVersion(ctx context.Context, tx *sql.Tx) (int64, error) {
	var v int64
	if err := s.queryOne(ctx, tx, dataVersionSQLite, nil, &v); err != nil {
		return 0, fmt.Errorf("read data version: %w", err)
	}
	return v, nil
}

// readLastSQLite reads the state of users (zero for an inbox that does
// not exist yet) into state.
func (s *Store) readLastSQLite(ctx context.Context, tx *sql.Tx, users []int64, state map[int64]*inboxState) error {
	list := make([]byte, 0, 8*len(users))
	list = append(list, '[')
	for i, u := range users {
		if i > 0 {
			list = append(list, ',')
		}
		list = strconv.AppendInt(list, u, 10)
		if st, ok := state[u]; ok {
			*st = inboxState{}
		} else {
			state[u] = &inboxState{}
		}
	}
	list = append(list, ']')
	st, err := s.db.TxStmt(ctx, tx, readLastSQLite)
	if err != nil {
		return fmt.Errorf("read inbox states: %w", err)
	}
	rows, err := st.QueryContext(ctx, string(list))
	if err != nil {
		return fmt.Errorf("read inbox states: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u int64
		var v inboxState
		if err := rows.Scan(&u, &v.last, &v.acked, &v.bytes, &v.ackedBytes); err != nil {
			return fmt.Errorf("read inbox states: %w", err)
		}
		*state[u] = v
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read inbox states: %w", err)
	}
	return nil
}

// maxBodyID returns the highest body id stored (SQLite).
func (s *Store) maxBodyID(ctx context.Context, tx *sql.Tx) (int64, error) {
	var id int64
	if err := s.queryOne(ctx, tx, maxBodySQLite, nil, &id); err != nil {
		return 0, fmt.Errorf("read body ids: %w", err)
	}
	return id, nil
}

// lookupMID returns the mid stored under k, or ok false (SQLite).
func (s *Store) lookupMID(ctx context.Context, tx *sql.Tx, k cidKey) (mid uuid.UUID, ok bool, err error) {
	q := lookupEntryCID
	if k.group {
		q = lookupBodyCID
	}
	var b []byte
	err = s.queryOne(ctx, tx, q, []any{k.from, k.cid}, &b)
	if errors.Is(err, sql.ErrNoRows) {
		return uuid.UUID{}, false, nil
	}
	if err != nil {
		return uuid.UUID{}, false, fmt.Errorf("look up cid: %w", err)
	}
	mid, err = uuid.FromBytes(b)
	if err != nil {
		return uuid.UUID{}, false, fmt.Errorf("look up cid: %w", err)
	}
	return mid, true, nil
}

// lookupCIDsMySQL returns the mids stored under keys.
func (s *Store) lookupCIDsMySQL(ctx context.Context, tx *sql.Tx, keys []cidKey) (map[cidKey]uuid.UUID, error) {
	found := make(map[cidKey]uuid.UUID)
	for _, group := range []bool{false, true} {
		var args []any
		for _, k := range keys {
			if k.group == group {
				args = append(args, k.from, k.cid)
			}
		}
		if len(args) == 0 {
			continue
		}
		st := lookupEntryCIDsMySQL
		if group {
			st = lookupBodyCIDsMySQL
		}
		err := s.queryRows(ctx, tx, st, args, func(rows *sql.Rows) error {
			k := cidKey{group: group}
			var b []byte
			if err := rows.Scan(&k.from, &k.cid, &b); err != nil {
				return err
			}
			mid, err := uuid.FromBytes(b)
			if err != nil {
				return err
			}
			found[k] = mid
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("look up cids: %w", err)
		}
	}
	return found, nil
}

// addLastMySQL advances the last seqs and bytes of users (ascending, no
// duplicates) by counts and bytes and returns the new states, holding the
// rows locked. Negative counts and bytes take back what an earlier call
// of the transaction added.
func (s *Store) addLastMySQL(ctx context.Context, tx *sql.Tx, users []int64, counts, bytes map[int64]int64) (map[int64]*inboxState, error) {
	args := make([]any, 0, 3*len(users))
	ids := make([]any, 0, len(users))
	for _, u := range users {
		args = append(args, u, counts[u], bytes[u])
		ids = append(ids, u)
	}
	state := make(map[int64]*inboxState, len(users))
	scan := func(rows *sql.Rows) error {
		var u int64
		var v inboxState
		if err := rows.Scan(&u, &v.last, &v.acked, &v.bytes, &v.ackedBytes); err != nil {
			return err
		}
		state[u] = &v
		return nil
	}
	if s.returning {
		// MariaDB answers the new values with the upsert itself.
		if err := s.queryRows(ctx, tx, addLastReturning, args, scan); err != nil {
			return nil, fmt.Errorf("advance last seqs: %w", err)
		}
	} else {
		if _, err := s.execRows(ctx, tx, addLastMySQL, args, nil); err != nil {
			return nil, fmt.Errorf("advance last seqs: %w", err)
		}
		if err := s.queryRows(ctx, tx, readLastMySQL, ids, scan); err != nil {
			return nil, fmt.Errorf("read last seqs: %w", err)
		}
	}
	if len(state) != len(users) {
		return nil, fmt.Errorf("read last seqs: found %d of %d inboxes", len(state), len(users))
	}
	return state, nil
}

// hasReturning reports whether a MySQL server answers INSERT ... RETURNING
// (MariaDB 10.5 and later; MySQL does not).
func (s *Store) hasReturning(ctx context.Context) (bool, error) {
	var v string
	if err := s.db.ReadQueryRow(ctx, "SELECT VERSION()").Scan(&v); err != nil {
		return false, fmt.Errorf("read server version: %w", err)
	}
	num, _, mariadb := strings.Cut(v, "-MariaDB")
	if !mariadb {
		return false, nil
	}
	var major, minor int
	if _, err := fmt.Sscanf(num, "%d.%d", &major, &minor); err != nil {
		return false, nil
	}
	return major > 10 || major == 10 && minor >= 5, nil
}

// insertBodyMySQL inserts one group body and returns its id.
func (s *Store) insertBodyMySQL(ctx context.Context, tx *sql.Tx, b bodyRow) (int64, error) {
	res, err := tx.ExecContext(ctx, insertBodyMySQL, b.mid[:], b.from, nullCID(b.cid), string(b.body), b.refs)
	if err != nil {
		return 0, fmt.Errorf("insert body: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("insert body: %w", err)
	}
	return id, nil
}

// nullCID is cid as a column value: "" is NULL.
func nullCID(cid string) any {
	if cid == "" {
		return nil
	}
	return cid
}

// updateAcksMySQL raises each user's acknowledged seq to min(seq,
// last_seq), never lowering it, in one statement per chunk that locks the
// rows in ascending user order. acks are sorted by user id with one entry
// per user.
func (s *Store) updateAcksMySQL(ctx context.Context, tx *sql.Tx, acks []api.Ack) error {
	return s.chunks(len(acks), nil, func(lo, hi int) error {
		var q strings.Builder
		// acked_bytes first, from the acknowledged seq before this
		// statement (MySQL assigns from left to right): the byte sum of
		// the entry at the new acknowledged seq (unchanged when that
		// entry is pruned: the seq did not move).
		q.WriteString("UPDATE inbox_state SET acked_bytes = CASE user_id")
		args := make([]any, 0, 6*(hi-lo))
		for _, a := range acks[lo:hi] {
			q.WriteString(" WHEN ? THEN COALESCE((SELECT e.cum_bytes FROM inbox_entries e WHERE e.user_id = ?" +
				" AND e.seq = GREATEST(acked_seq, LEAST(?, last_seq))), acked_bytes)")
			args = append(args, a.UserID, a.UserID, a.Seq)
		}
		q.WriteString(" END, acked_seq = CASE user_id")
		for _, a := range acks[lo:hi] {
			q.WriteString(" WHEN ? THEN GREATEST(acked_seq, LEAST(?, last_seq))")
			args = append(args, a.UserID, a.Seq)
		}
		q.WriteString(" END WHERE user_id IN (")
		q.WriteString(sqldb.Placeholders(hi - lo))
		q.WriteByte(')')
		for _, a := range acks[lo:hi] {
			args = append(args, a.UserID)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("update acknowledged seqs: %w", err)
		}
		return nil
	})
}

// The fetch's queries.
const (
	selectStateQuery   = "SELECT acked_seq, last_seq FROM inbox_state WHERE user_id = ?"
	selectEntriesQuery = `SELECT e.seq, COALESCE(e.mid, b.mid), COALESCE(e.sender_id, b.sender_id), COALESCE(e.body, b.body)
		FROM inbox_entries e LEFT JOIN bodies b ON b.id = e.body_id
		WHERE e.user_id = ? AND e.seq > ? AND e.seq <= ?
		ORDER BY e.seq`
	selectEntriesLimitQuery = selectEntriesQuery + ` LIMIT ?`
)

// On SQLite selectEntriesQuery has no LIMIT: the rows come in the primary
// key's order as they are read, and selectEntries stops reading after the
// page. A "LIMIT ?" made SQLite (3.47 and later: the planner looks at a
// bound LIMIT's value) recompile the statement on every run, which cost
// as much as running it. MySQL sends a result set whole (closing the rows
// reads the rest), so there the LIMIT stays.

// querier runs a fixed read query: the read pool (sqldb.DB) or a read
// transaction (txQuerier).
type querier interface {
	ReadQuery(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ReadQueryRow(ctx context.Context, query string, args ...any) *sql.Row
}

// txQuerier runs fixed read queries in a read transaction, as statements
// prepared once on the read pool.
type txQuerier struct {
	db *sqldb.DB
	tx *sql.Tx
}

func (q txQuerier) ReadQuery(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := q.db.ReadTxStmt(ctx, q.tx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (q txQuerier) ReadQueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := q.db.ReadTxStmt(ctx, q.tx, query)
	if err != nil {
		return q.tx.QueryRowContext(ctx, query, args...) // reports the error
	}
	return st.QueryRowContext(ctx, args...)
}

// selectState returns user's acknowledged and last seq (0, 0 for an inbox
// that never received anything).
func (s *Store) selectState(ctx context.Context, q querier, user int64) (acked, last int64, err error) {
	err = q.ReadQueryRow(ctx, selectStateQuery, user).Scan(&acked, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read inbox state: %w", err)
	}
	return acked, last, nil
}

// selectEntries returns user's inbox entries with after < seq <= upto in
// seq order, at most limit, stopping before the bodies pass maxBytes (but
// always returning the first entry there is).
func (s *Store) selectEntries(ctx context.Context, q querier, user, after, upto int64, limit, maxBytes int) ([]api.InboxMessage, error) {
	var (
		rows *sql.Rows
		err  error
	)
	if s.db.Dialect == sqldb.SQLite {
		rows, err = q.ReadQuery(ctx, selectEntriesQuery, user, after, upto)
	} else {
		rows, err = q.ReadQuery(ctx, selectEntriesLimitQuery, user, after, upto, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("read inbox: %w", err)
	}
	defer rows.Close()
	out := []api.InboxMessage{}
	size := 0
	for len(out) < limit && rows.Next() {
		var (
			m        api.InboxMessage
			mid      []byte
			body     []byte
			uuidBody uuid.UUID
		)
		if err := rows.Scan(&m.Seq, &mid, &m.From, &body); err != nil {
			return nil, fmt.Errorf("read inbox: %w", err)
		}
		size += len(body)
		if len(out) > 0 && size > maxBytes {
			break
		}
		if uuidBody, err = uuid.FromBytes(mid); err != nil {
			return nil, fmt.Errorf("read inbox: entry %d of %d: %w", m.Seq, user, err)
		}
		m.MID = uuidBody.String()
		m.Body = body
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read inbox: %w", err)
	}
	return out, nil
}

// The prune's statements.
const (
	// Users whose mark is old enough to delete up to it, from a user id
	// on (the walk goes through inbox_prune in key order).
	pruneDueQuery = `SELECT user_id, pruned_seq, mark_seq FROM inbox_prune
		WHERE user_id > ? AND mark_seq > pruned_seq AND mark_at <= ? ORDER BY user_id LIMIT ?`
	// The group bodies the entries of a range point at (NULL: one-to-one).
	pruneRangeQuery = `SELECT body_id FROM inbox_entries WHERE user_id = ? AND seq > ? AND seq <= ?`
	deleteRange     = "DELETE FROM inbox_entries WHERE user_id = ? AND seq > ? AND seq <= ?"
	setPruned       = "UPDATE inbox_prune SET pruned_seq = ? WHERE user_id = ?"
	releaseBody     = "UPDATE bodies SET refs = refs - ? WHERE id = ?"
	deleteDeadBody  = "DELETE FROM bodies WHERE id = ? AND refs <= 0"
	markSQLite      = `INSERT INTO inbox_prune (user_id, pruned_seq, mark_seq, mark_at)
		SELECT s.user_id, 0, s.acked_seq, ? FROM inbox_state s LEFT JOIN inbox_prune p ON p.user_id = s.user_id
		WHERE s.acked_seq > COALESCE(p.mark_seq, 0) AND COALESCE(p.mark_seq, 0) = COALESCE(p.pruned_seq, 0)
		ON CONFLICT (user_id) DO UPDATE SET mark_seq = excluded.mark_seq, mark_at = excluded.mark_at`
	markMySQL = `INSERT INTO inbox_prune (user_id, pruned_seq, mark_seq, mark_at)
		SELECT s.user_id, 0, s.acked_seq, ? FROM inbox_state s LEFT JOIN inbox_prune p ON p.user_id = s.user_id
		WHERE s.acked_seq > COALESCE(p.mark_seq, 0) AND COALESCE(p.mark_seq, 0) = COALESCE(p.pruned_seq, 0)
		ON DUPLICATE KEY UPDATE mark_seq = VALUES(mark_seq), mark_at = VALUES(mark_at)`
)

// pruneDue is an inbox with entries to delete: those after pruned up to
// mark.
type pruneDue struct {
	user, pruned, mark int64
}

// selectPruneDue returns up to limit inboxes after user id from whose
// mark was set at or before cutoff and is not applied yet.
func (s *Store) selectPruneDue(ctx context.Context, from, cutoff int64, limit int) ([]pruneDue, error) {
	rows, err := s.db.ReadQuery(ctx, pruneDueQuery, from, cutoff, limit)
	if err != nil {
		return nil, fmt.Errorf("find inboxes to prune: %w", err)
	}
	defer rows.Close()
	var out []pruneDue
	for rows.Next() {
		var d pruneDue
		if err := rows.Scan(&d.user, &d.pruned, &d.mark); err != nil {
			return nil, fmt.Errorf("find inboxes to prune: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find inboxes to prune: %w", err)
	}
	return out, nil
}

// pruneRange deletes user's entries with from < seq <= to and the group
// bodies no entry points at any more, and records to as pruned. It
// returns the entries and the messages (one-to-one entries and group
// bodies) deleted.
func (s *Store) pruneRange(ctx context.Context, tx *sql.Tx, user, from, to int64) (entries, messages int64, err error) {
	bodies := map[int64]int64{} // body id -> entries deleted
	rows, err := tx.QueryContext(ctx, pruneRangeQuery, user, from, to)
	if err != nil {
		return 0, 0, fmt.Errorf("read entries to prune: %w", err)
	}
	for rows.Next() {
		var body sql.NullInt64
		if err := rows.Scan(&body); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("read entries to prune: %w", err)
		}
		if body.Valid {
			bodies[body.Int64]++
		} else {
			messages++
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("read entries to prune: %w", err)
	}
	res, err := tx.ExecContext(ctx, deleteRange, user, from, to)
	if err != nil {
		return 0, 0, fmt.Errorf("delete entries: %w", err)
	}
	if entries, err = res.RowsAffected(); err != nil {
		return 0, 0, fmt.Errorf("delete entries: %w", err)
	}
	for id, n := range bodies {
		if _, err := tx.ExecContext(ctx, releaseBody, n, id); err != nil {
			return 0, 0, fmt.Errorf("release body: %w", err)
		}
		res, err := tx.ExecContext(ctx, deleteDeadBody, id)
		if err != nil {
			return 0, 0, fmt.Errorf("delete body: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, 0, fmt.Errorf("delete body: %w", err)
		}
		messages += n
	}
	if _, err := tx.ExecContext(ctx, setPruned, to, user); err != nil {
		return 0, 0, fmt.Errorf("record prune: %w", err)
	}
	return entries, messages, nil
}

// markAcked sets a new mark at at on every inbox whose previous mark is
// applied and that has acknowledged more since.
func (s *Store) markAcked(ctx context.Context, at int64) error {
	q := markSQLite
	if s.db.Dialect == sqldb.MySQL {
		q = markMySQL
	}
	if _, err := s.db.ExecContext(ctx, q, at); err != nil {
		return fmt.Errorf("mark acknowledged entries: %w", err)
	}
	return nil
}
