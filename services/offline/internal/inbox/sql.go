package inbox

// Every SQL statement of the offline service is in this file. All values are
// bound as parameters; only placeholder lists ("?,?,?") are built in code.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/sqldb"
)

const (
	// chunkRows bounds the rows, keys or ids in one multi-row statement.
	chunkRows = 500
	// chunkBytes bounds the message bodies in one multi-row INSERT, well
	// under MySQL's default max_allowed_packet (16 MiB).
	chunkBytes = 4 << 20
)

// migrations is the schema of the offline component.
//
// messages holds each chat message once; inbox holds one row per recipient
// with that recipient's seq; inbox_state holds each inbox's last assigned
// and acknowledged seq. cid compares byte for byte (utf8mb4_bin) and NULL
// cids never collide, so messages without a cid are never deduplicated.
func migrations() []sqldb.Migration {
	return []sqldb.Migration{{
		Version: 1,
		SQLite: []string{
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
			`CREATE TABLE IF NOT EXISTS inbox_state (
				user_id INTEGER NOT NULL PRIMARY KEY,
				last_seq INTEGER NOT NULL DEFAULT 0,
				acked_seq INTEGER NOT NULL DEFAULT 0
			)`,
		},
		MySQL: []string{
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
			`CREATE TABLE IF NOT EXISTS inbox_state (
				user_id BIGINT NOT NULL,
				last_seq BIGINT NOT NULL DEFAULT 0,
				acked_seq BIGINT NOT NULL DEFAULT 0,
				PRIMARY KEY (user_id)
			) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		},
	}}
}

// cidKey identifies a message by its sender's client id.
type cidKey struct {
	from int64
	cid  string
}

// messageRow is a row of messages.
type messageRow struct {
	mid  string
	from int64
	cid  string // "" is stored as NULL
	body []byte
}

// inboxRow is a row of inbox.
type inboxRow struct {
	user int64
	seq  int64
	mid  string
}

// seqPair is an inbox's user id and a seq.
type seqPair struct {
	user int64
	seq  int64
}

// each calls fn with consecutive [lo, hi) ranges of at most chunkRows of n.
func each(n int, fn func(lo, hi int) error) error {
	for lo := 0; lo < n; lo += chunkRows {
		if err := fn(lo, min(lo+chunkRows, n)); err != nil {
			return err
		}
	}
	return nil
}

// values appends n groups like "(?,?)" separated by commas.
func values(b *strings.Builder, n int, group string) {
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(group)
	}
}

// lookupCIDs returns the mids of the messages already stored under keys.
func (s *Store) lookupCIDs(ctx context.Context, tx *sql.Tx, keys []cidKey) (map[cidKey]string, error) {
	found := make(map[cidKey]string)
	err := each(len(keys), func(lo, hi int) error {
		var q strings.Builder
		q.WriteString("SELECT sender_id, cid, mid FROM messages WHERE (sender_id, cid) IN (")
		if s.db.Dialect == sqldb.SQLite {
			// SQLite wants a subquery on the right of a row-value IN.
			q.WriteString("VALUES ")
		}
		values(&q, hi-lo, "(?,?)")
		q.WriteByte(')')
		args := make([]any, 0, 2*(hi-lo))
		for _, k := range keys[lo:hi] {
			args = append(args, k.from, k.cid)
		}
		rows, err := tx.QueryContext(ctx, q.String(), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k cidKey
			var mid string
			if err := rows.Scan(&k.from, &k.cid, &mid); err != nil {
				return err
			}
			found[k] = mid
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("look up cids: %w", err)
	}
	return found, nil
}

// insertMessages inserts message rows, several per statement.
func (s *Store) insertMessages(ctx context.Context, tx *sql.Tx, msgs []messageRow, createdAt int64) error {
	for lo := 0; lo < len(msgs); {
		hi, size := lo, 0
		for hi < len(msgs) && hi-lo < chunkRows && (hi == lo || size+len(msgs[hi].body) <= chunkBytes) {
			size += len(msgs[hi].body)
			hi++
		}
		var q strings.Builder
		q.WriteString("INSERT INTO messages (mid, sender_id, cid, body, created_at) VALUES ")
		values(&q, hi-lo, "(?,?,?,?,?)")
		args := make([]any, 0, 5*(hi-lo))
		for _, m := range msgs[lo:hi] {
			cid := sql.NullString{String: m.cid, Valid: m.cid != ""}
			args = append(args, m.mid, m.from, cid, string(m.body), createdAt)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("insert messages: %w", err)
		}
		lo = hi
	}
	return nil
}

// lockStates makes sure every user in users (sorted ascending, no
// duplicates) has an inbox_state row, locks those rows for the rest of the
// transaction (MySQL; SQLite has one writer at a time) and returns each
// user's last seq.
//
// On MySQL the rows are created with INSERT ... ON DUPLICATE KEY UPDATE rather
// than INSERT IGNORE: IGNORE takes a shared lock on an existing row, and two
// transactions that both hold it deadlock when both upgrade to FOR UPDATE.
// The no-op update takes the exclusive lock at once, in ascending user order.
func (s *Store) lockStates(ctx context.Context, tx *sql.Tx, users []int64) (map[int64]int64, error) {
	last := make(map[int64]int64, len(users))
	err := each(len(users), func(lo, hi int) error {
		args := make([]any, 0, hi-lo)
		for _, u := range users[lo:hi] {
			args = append(args, u)
		}
		var q strings.Builder
		if s.db.Dialect == sqldb.MySQL {
			q.WriteString("INSERT INTO inbox_state (user_id) VALUES ")
			values(&q, hi-lo, "(?)")
			q.WriteString(" ON DUPLICATE KEY UPDATE last_seq = last_seq")
		} else {
			q.WriteString("INSERT OR IGNORE INTO inbox_state (user_id) VALUES ")
			values(&q, hi-lo, "(?)")
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("create inbox states: %w", err)
		}

		q.Reset()
		q.WriteString("SELECT user_id, last_seq FROM inbox_state WHERE user_id IN (")
		q.WriteString(sqldb.Placeholders(hi - lo))
		q.WriteString(") ORDER BY user_id")
		if s.db.Dialect == sqldb.MySQL {
			q.WriteString(" FOR UPDATE")
		}
		rows, err := tx.QueryContext(ctx, q.String(), args...)
		if err != nil {
			return fmt.Errorf("lock inbox states: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var u, seq int64
			if err := rows.Scan(&u, &seq); err != nil {
				return fmt.Errorf("lock inbox states: %w", err)
			}
			last[u] = seq
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("lock inbox states: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(last) != len(users) {
		return nil, fmt.Errorf("lock inbox states: found %d of %d rows", len(last), len(users))
	}
	return last, nil
}

// insertInbox inserts inbox rows, several per statement.
func (s *Store) insertInbox(ctx context.Context, tx *sql.Tx, rows []inboxRow, createdAt int64) error {
	return each(len(rows), func(lo, hi int) error {
		var q strings.Builder
		q.WriteString("INSERT INTO inbox (user_id, seq, mid, created_at) VALUES ")
		values(&q, hi-lo, "(?,?,?,?)")
		args := make([]any, 0, 4*(hi-lo))
		for _, r := range rows[lo:hi] {
			args = append(args, r.user, r.seq, r.mid, createdAt)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("insert inbox entries: %w", err)
		}
		return nil
	})
}

// updateLastSeqs sets each user's last seq.
func (s *Store) updateLastSeqs(ctx context.Context, tx *sql.Tx, last []seqPair) error {
	return each(len(last), func(lo, hi int) error {
		var q strings.Builder
		q.WriteString("UPDATE inbox_state SET last_seq = CASE user_id")
		args := make([]any, 0, 3*(hi-lo))
		for _, p := range last[lo:hi] {
			q.WriteString(" WHEN ? THEN ?")
			args = append(args, p.user, p.seq)
		}
		q.WriteString(" END WHERE user_id IN (")
		q.WriteString(sqldb.Placeholders(hi - lo))
		q.WriteByte(')')
		for _, p := range last[lo:hi] {
			args = append(args, p.user)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("update last seqs: %w", err)
		}
		return nil
	})
}

// selectState returns user's acknowledged and last seq (0, 0 for an inbox
// that never received anything).
func (s *Store) selectState(ctx context.Context, user int64) (acked, last int64, err error) {
	err = s.db.ReadQueryRow(ctx,
		"SELECT acked_seq, last_seq FROM inbox_state WHERE user_id = ?", user).Scan(&acked, &last)
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
func (s *Store) selectEntries(ctx context.Context, user, after, upto int64, limit, maxBytes int) ([]api.InboxMessage, error) {
	rows, err := s.db.ReadQuery(ctx,
		`SELECT i.seq, i.mid, m.sender_id, m.body
		FROM inbox i JOIN messages m ON m.mid = i.mid
		WHERE i.user_id = ? AND i.seq > ? AND i.seq <= ?
		ORDER BY i.seq LIMIT ?`, user, after, upto, limit)
	if err != nil {
		return nil, fmt.Errorf("read inbox: %w", err)
	}
	defer rows.Close()
	out := []api.InboxMessage{}
	size := 0
	for rows.Next() {
		var m api.InboxMessage
		var body []byte
		if err := rows.Scan(&m.Seq, &m.MID, &m.From, &body); err != nil {
			return nil, fmt.Errorf("read inbox: %w", err)
		}
		size += len(body)
		if len(out) > 0 && size > maxBytes {
			break
		}
		m.Body = body
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read inbox: %w", err)
	}
	return out, nil
}

// updateAcks raises each user's acknowledged seq to min(seq, last_seq),
// never lowering it. acks are sorted by user id with one entry per user.
func (s *Store) updateAcks(ctx context.Context, tx *sql.Tx, acks []api.Ack) error {
	// MySQL's LEAST/GREATEST are SQLite's multi-argument MIN/MAX.
	set := " WHEN ? THEN GREATEST(acked_seq, LEAST(?, last_seq))"
	if s.db.Dialect == sqldb.SQLite {
		set = " WHEN ? THEN MAX(acked_seq, MIN(?, last_seq))"
	}
	return each(len(acks), func(lo, hi int) error {
		var q strings.Builder
		q.WriteString("UPDATE inbox_state SET acked_seq = CASE user_id")
		args := make([]any, 0, 3*(hi-lo))
		for _, a := range acks[lo:hi] {
			q.WriteString(set)
			args = append(args, a.UserID, a.Seq)
		}
		q.WriteString(" END WHERE user_id IN (")
		q.WriteString(sqldb.Placeholders(hi - lo))
		q.WriteByte(')')
		for _, a := range acks[lo:hi] {
			args = append(args, a.UserID)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("update acked seqs: %w", err)
		}
		return nil
	})
}

// deleteAcked deletes inbox entries created before cutoff that their user
// has acknowledged.
func (s *Store) deleteAcked(ctx context.Context, tx *sql.Tx, cutoff int64, limit int) (int64, error) {
	const acked = `created_at < ?
		AND seq <= (SELECT s.acked_seq FROM inbox_state s WHERE s.user_id = inbox.user_id)`
	q := `DELETE FROM inbox WHERE (user_id, seq) IN
		(SELECT user_id, seq FROM inbox WHERE ` + acked + ` LIMIT ?)`
	if s.db.Dialect == sqldb.MySQL {
		q = `DELETE FROM inbox WHERE ` + acked + ` LIMIT ?`
	}
	res, err := tx.ExecContext(ctx, q, cutoff, limit)
	if err != nil {
		return 0, fmt.Errorf("delete acknowledged entries: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete acknowledged entries: %w", err)
	}
	return n, nil
}

// deleteOrphans deletes messages created before cutoff that no inbox entry
// refers to.
func (s *Store) deleteOrphans(ctx context.Context, tx *sql.Tx, cutoff int64, limit int) (int64, error) {
	const orphan = `created_at < ? AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.mid = messages.mid)`
	q := `DELETE FROM messages WHERE mid IN (SELECT mid FROM messages WHERE ` + orphan + ` LIMIT ?)`
	if s.db.Dialect == sqldb.MySQL {
		q = `DELETE FROM messages WHERE ` + orphan + ` LIMIT ?`
	}
	res, err := tx.ExecContext(ctx, q, cutoff, limit)
	if err != nil {
		return 0, fmt.Errorf("delete orphaned messages: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete orphaned messages: %w", err)
	}
	return n, nil
}
