// Package account stores natter's accounts and sessions: users (name and
// bcrypt hash), the presence leases gateways renew, and the one session each
// user may hold. Every query of the user service is in this file.
//
// A session is live iff its row exists and its gateway's lease has not
// expired. Gateways renew their lease periodically; a gateway that dies
// without saying goodbye takes its sessions offline once its lease runs out,
// and Cleanup eventually removes the leftovers.
package account

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/natter-chat/natter/shared/sqldb"
)

// Component is the name the migrations are recorded under.
const Component = "user"

// Errors returned by the Store.
var (
	// ErrNameTaken: Register was given a name that another account has.
	ErrNameTaken = errors.New("name taken")
	// ErrNotFound: no user with that id.
	ErrNotFound = errors.New("user not found")
	// ErrSessionLive: a claim (ClaimSessions) under PolicyReject while another session
	// of the user is live.
	ErrSessionLive = errors.New("session live elsewhere")
	// ErrTokenUsed: a resume's claim found its token gone (another resume
	// with it, or a logout, came first).
	ErrTokenUsed = errors.New("resume token already used")
)

// Policy decides what a login does to a live session of the same user.
type Policy int

// Policies.
const (
	// PolicyKick replaces the live session; the caller tells it to close.
	PolicyKick Policy = iota + 1
	// PolicyReject refuses the login while the other session is live.
	PolicyReject
)

func (p Policy) String() string {
	switch p {
	case PolicyKick:
		return "kick"
	case PolicyReject:
		return "reject"
	}
	return "unknown"
}

// migrations returns the schema, one entry per version. Never edit a version
// that has shipped; add a new one.
func migrations() []sqldb.Migration {
	return []sqldb.Migration{{
		Version: 1,
		SQLite: []string{
			`CREATE TABLE IF NOT EXISTS users (
				id INTEGER PRIMARY KEY AUTOINCREMENT,
				name VARCHAR(50) NOT NULL UNIQUE,
				password_hash VARCHAR(100) NOT NULL,
				created_at BIGINT NOT NULL
			)`,
			`CREATE TABLE IF NOT EXISTS gateways (
				gateway_id VARCHAR(64) NOT NULL PRIMARY KEY,
				expires_at BIGINT NOT NULL
			)`,
			`CREATE TABLE IF NOT EXISTS sessions (
				user_id BIGINT NOT NULL PRIMARY KEY,
				session_id VARCHAR(64) NOT NULL,
				gateway_id VARCHAR(64) NOT NULL,
				started_at BIGINT NOT NULL
			)`,
			`CREATE INDEX IF NOT EXISTS sessions_gateway ON sessions (gateway_id)`,
		},
		// utf8mb4_bin: names compare byte for byte (no case or accent
		// folding), and 4-byte characters (emoji, rarer CJK) round-trip.
		MySQL: []string{
			`CREATE TABLE IF NOT EXISTS users (
				id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
				name VARCHAR(50) NOT NULL,
				password_hash VARCHAR(100) NOT NULL,
				created_at BIGINT NOT NULL,
				UNIQUE KEY users_name (name)
			) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
			`CREATE TABLE IF NOT EXISTS gateways (
				gateway_id VARCHAR(64) NOT NULL PRIMARY KEY,
				expires_at BIGINT NOT NULL
			) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
			`CREATE TABLE IF NOT EXISTS sessions (
				user_id BIGINT NOT NULL PRIMARY KEY,
				session_id VARCHAR(64) NOT NULL,
				gateway_id VARCHAR(64) NOT NULL,
				started_at BIGINT NOT NULL,
				KEY sessions_gateway (gateway_id)
			) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
		},
	}, {
		// Resume tokens: only their SHA-256 is stored. session_id is the
		// session that last used the token (an explicit logout of it
		// revokes the token).
		Version: 2,
		SQLite: []string{
			`CREATE TABLE IF NOT EXISTS resume_tokens (
				token_hash CHAR(64) NOT NULL PRIMARY KEY,
				user_id BIGINT NOT NULL,
				session_id VARCHAR(64) NOT NULL,
				expires_at BIGINT NOT NULL
			)`,
			`CREATE INDEX IF NOT EXISTS resume_tokens_user ON resume_tokens (user_id)`,
			`CREATE INDEX IF NOT EXISTS resume_tokens_expiry ON resume_tokens (expires_at)`,
		},
		MySQL: []string{
			`CREATE TABLE IF NOT EXISTS resume_tokens (
				token_hash CHAR(64) CHARACTER SET ascii NOT NULL PRIMARY KEY,
				user_id BIGINT NOT NULL,
				session_id VARCHAR(64) NOT NULL,
				expires_at BIGINT NOT NULL,
				KEY resume_tokens_user (user_id),
				KEY resume_tokens_expiry (expires_at)
			) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
		},
	}, {
		// user_names: the unique form of each name (the SHA-256 of
		// names.Key: case, width and invisible characters folded), so
		// that "bob" and "BOB" cannot both be registered. Accounts
		// registered before are given theirs by BackfillNameKeys.
		// login_failures: failed password logins per account ("u:<id>")
		// and per address ("a:<ip or /64>"), for throttling.
		Version: 3,
		SQLite: []string{
			`CREATE TABLE IF NOT EXISTS user_names (
				name_key CHAR(64) NOT NULL PRIMARY KEY,
				user_id BIGINT NOT NULL UNIQUE
			)`,
			`CREATE TABLE IF NOT EXISTS login_failures (
				k VARCHAR(80) NOT NULL PRIMARY KEY,
				failures INT NOT NULL,
				last_failure BIGINT NOT NULL,
				locked_until BIGINT NOT NULL
			)`,
			`CREATE INDEX IF NOT EXISTS login_failures_last ON login_failures (last_failure)`,
		},
		MySQL: []string{
			`CREATE TABLE IF NOT EXISTS user_names (
				name_key CHAR(64) CHARACTER SET ascii NOT NULL PRIMARY KEY,
				user_id BIGINT NOT NULL,
				UNIQUE KEY user_names_user (user_id)
			) ENGINE=InnoDB`,
			`CREATE TABLE IF NOT EXISTS login_failures (
				k VARCHAR(80) CHARACTER SET ascii NOT NULL PRIMARY KEY,
				failures INT NOT NULL,
				last_failure BIGINT NOT NULL,
				locked_until BIGINT NOT NULL,
				KEY login_failures_last (last_failure)
			) ENGINE=InnoDB`,
		},
	}}
}

// TokenUser checks that tokenHash is userID's and unexpired at now, and
// returns the user's name and the token's expiry (unix ms); ok is false for
// an unknown, expired or foreign token.
func (s *Store) TokenUser(ctx context.Context, tokenHash string, userID int64, now int64) (name string, expiresAt int64, ok bool, err error) {
	err = s.db.ReadQueryRow(ctx,
		`SELECT u.name, t.expires_at FROM resume_tokens t JOIN users u ON u.id = t.user_id
			WHERE t.token_hash = ? AND t.user_id = ? AND t.expires_at > ?`,
		tokenHash, userID, now).Scan(&name, &expiresAt)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, fmt.Errorf("token of %d: %w", userID, err)
	}
	return name, expiresAt, true, nil
}

// RevokeTokens deletes the resume tokens last used by these sessions.
func (s *Store) RevokeTokens(ctx context.Context, refs []SessionRef) error {
	if len(refs) == 0 {
		return nil
	}
	args := make([]any, 0, 2*len(refs))
	rows := make([]string, len(refs))
	for i, r := range refs {
		args = append(args, r.UserID, r.SessionID)
		rows[i] = "(?,?)"
	}
	if _, err := s.db.ExecContext(ctx,
		`DELETE FROM resume_tokens WHERE (user_id, session_id) IN (`+strings.Join(rows, ",")+`)`, args...); err != nil {
		return fmt.Errorf("revoke tokens of %d sessions: %w", len(refs), err)
	}
	return nil
}

// ExpireTokens deletes tokens that expired before now.
func (s *Store) ExpireTokens(ctx context.Context, now int64) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM resume_tokens WHERE expires_at <= ?`, now)
	if err != nil {
		return 0, fmt.Errorf("expire tokens: %w", err)
	}
	return res.RowsAffected()
}

// Store runs the user service's queries.
type Store struct {
	db *sqldb.DB
}

// New returns a Store on db. Call Migrate before using it.
func New(db *sqldb.DB) *Store {
	return &Store{db: db}
}

// Migrate brings the schema up to date.
func (s *Store) Migrate(ctx context.Context) error {
	return s.db.Migrate(ctx, Component, migrations())
}

// User is an account's public record.
type User struct {
	ID   int64
	Name string
}

// Register creates an account named name, whose unique form is nameKey
// (names.KeyHash), and returns its id, or ErrNameTaken if another account
// has the name or its unique form.
func (s *Store) Register(ctx context.Context, name, nameKey string, hash []byte) (int64, error) {
	var id int64
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, ?)`,
			name, string(hash), time.Now().UnixMilli())
		if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("last insert id: %w", err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO user_names (name_key, user_id) VALUES (?, ?)`, nameKey, id)
		return err
	})
	if err != nil {
		if sqldb.IsDuplicate(err) {
			return 0, fmt.Errorf("register: %w", ErrNameTaken)
		}
		return 0, fmt.Errorf("register: %w", err)
	}
	return id, nil
}

// NameCollision is an account registered before names were compared in
// their unique form whose name has the unique form of an older account's.
type NameCollision struct {
	UserID, OwnerID int64
	Name            string
}

// BackfillNameKeys gives every account after afterID that has no unique
// form yet its own (key(name)), in id order, so the oldest account with a
// name keeps it; a younger one whose form is taken gets
// collisionKey(name, id) instead (unique, and no new name can have it) and
// is returned. It returns the highest id it looked at.
func (s *Store) BackfillNameKeys(ctx context.Context, afterID int64, key func(name string) string,
	collisionKey func(name string, id int64) string) (last int64, collisions []NameCollision, err error) {
	const batch = 1000
	last = afterID
	for {
		var users []User
		rows, err := s.db.ReadQuery(ctx,
			`SELECT u.id, u.name FROM users u LEFT JOIN user_names n ON n.user_id = u.id
				WHERE u.id > ? AND n.user_id IS NULL ORDER BY u.id LIMIT ?`, last, batch)
		if err != nil {
			return last, collisions, fmt.Errorf("backfill name keys: %w", err)
		}
		for rows.Next() {
			var u User
			if err := rows.Scan(&u.ID, &u.Name); err != nil {
				rows.Close()
				return last, collisions, fmt.Errorf("backfill name keys: %w", err)
			}
			users = append(users, u)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return last, collisions, fmt.Errorf("backfill name keys: %w", err)
		}
		for _, u := range users {
			k := key(u.Name)
			_, err := s.db.ExecContext(ctx, `INSERT INTO user_names (name_key, user_id) VALUES (?, ?)`, k, u.ID)
			if sqldb.IsDuplicate(err) {
				var owner int64
				if qerr := s.db.ReadQueryRow(ctx, `SELECT user_id FROM user_names WHERE name_key = ?`, k).Scan(&owner); qerr != nil {
					return last, collisions, fmt.Errorf("backfill name keys: owner of %d's name: %w", u.ID, qerr)
				}
				if owner == u.ID {
					continue // another instance did it meanwhile
				}
				_, err = s.db.ExecContext(ctx, `INSERT INTO user_names (name_key, user_id) VALUES (?, ?)`, collisionKey(u.Name, u.ID), u.ID)
				if err == nil {
					collisions = append(collisions, NameCollision{UserID: u.ID, OwnerID: owner, Name: u.Name})
				}
			}
			if err != nil && !sqldb.IsDuplicate(err) {
				return last, collisions, fmt.Errorf("backfill name key of %d: %w", u.ID, err)
			}
			last = u.ID
		}
		if len(users) < batch {
			return last, collisions, nil
		}
	}
}

// Failure is the failed-login record of one key: how many failures in a
// row, the last one's time and until when logins are refused (unix ms).
type Failure struct {
	Failures    int
	LastFailure int64
	LockedUntil int64
}

// LoginFailures returns the records of keys that have one.
func (s *Store) LoginFailures(ctx context.Context, keys []string) (map[string]Failure, error) {
	out := make(map[string]Failure, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	rows, err := s.db.ReadQuery(ctx,
		`SELECT k, failures, last_failure, locked_until FROM login_failures WHERE k IN (`+sqldb.Placeholders(len(keys))+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("login failures: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var f Failure
		if err := rows.Scan(&k, &f.Failures, &f.LastFailure, &f.LockedUntil); err != nil {
			return nil, fmt.Errorf("login failures: %w", err)
		}
		out[k] = f
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("login failures: %w", err)
	}
	return out, nil
}

// AddLoginFailure records a failed login on each key in one transaction:
// next turns a key's record (the zero Failure if it has none) into the new
// one. Records are locked while next runs, so concurrent failures on a key
// (several service instances) each count. It returns the new records.
func (s *Store) AddLoginFailure(ctx context.Context, keys []string, next func(key string, prev Failure) Failure) (map[string]Failure, error) {
	out := make(map[string]Failure, len(keys))
	upsert := `INSERT INTO login_failures (k, failures, last_failure, locked_until) VALUES (?, ?, ?, ?)
		ON CONFLICT(k) DO UPDATE SET failures = excluded.failures, last_failure = excluded.last_failure,
			locked_until = excluded.locked_until`
	if s.db.Dialect == sqldb.MySQL {
		upsert = `INSERT INTO login_failures (k, failures, last_failure, locked_until) VALUES (?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE failures = VALUES(failures), last_failure = VALUES(last_failure),
			locked_until = VALUES(locked_until)`
	}
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		clear(out)
		for _, k := range keys {
			var prev Failure
			err := tx.QueryRowContext(ctx,
				`SELECT failures, last_failure, locked_until FROM login_failures WHERE k = ?`+s.forUpdate(), k).
				Scan(&prev.Failures, &prev.LastFailure, &prev.LockedUntil)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			f := next(k, prev)
			if _, err := tx.ExecContext(ctx, upsert, k, f.Failures, f.LastFailure, f.LockedUntil); err != nil {
				return err
			}
			out[k] = f
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record failed login: %w", err)
	}
	return out, nil
}

// ClearLoginFailures forgets the failures of key (a successful login of
// the account).
func (s *Store) ClearLoginFailures(ctx context.Context, key string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM login_failures WHERE k = ?`, key); err != nil {
		return fmt.Errorf("clear login failures: %w", err)
	}
	return nil
}

// ExpireLoginFailures deletes the records whose last failure was before
// cutoff and whose lock is over at now (unix ms).
func (s *Store) ExpireLoginFailures(ctx context.Context, cutoff, now int64) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM login_failures WHERE last_failure < ? AND locked_until <= ?`, cutoff, now)
	if err != nil {
		return 0, fmt.Errorf("expire login failures: %w", err)
	}
	return res.RowsAffected()
}

// PasswordHash returns the name and the bcrypt password hash of user id, or
// ErrNotFound.
func (s *Store) PasswordHash(ctx context.Context, id int64) (name string, hash []byte, err error) {
	var h string
	err = s.db.ReadQueryRow(ctx,
		`SELECT name, password_hash FROM users WHERE id = ?`, id).Scan(&name, &h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, fmt.Errorf("password hash of %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", nil, fmt.Errorf("password hash of %d: %w", id, err)
	}
	return name, []byte(h), nil
}

// Lookup returns the users among ids that exist, in id order. Callers bound
// the number of ids.
func (s *Store) Lookup(ctx context.Context, ids []int64) ([]User, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.db.ReadQueryOnce(ctx,
		`SELECT id, name FROM users WHERE id IN (`+sqldb.Placeholders(len(ids))+`) ORDER BY id`,
		int64Args(ids)...)
	if err != nil {
		return nil, fmt.Errorf("lookup %d users: %w", len(ids), err)
	}
	defer rows.Close()
	var users []User
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.ID, &u.Name); err != nil {
			return nil, fmt.Errorf("lookup %d users: %w", len(ids), err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lookup %d users: %w", len(ids), err)
	}
	return users, nil
}

// Claim is one login's claim of its user's session (see ClaimSessions) and
// the write of its resume token, done together.
type Claim struct {
	UserID    int64
	SessionID string
	GatewayID string
	Now       int64 // unix ms
	Policy    Policy
	// IssueHash is the hash of a new token to store for this session until
	// ExpiresAt. With RotateHash, the hash of the token a resume used, the
	// new token replaces that one, which stops working (a token can be used
	// once; the claim fails with ErrTokenUsed if it is gone); without, it is
	// a password login's.
	IssueHash  string
	RotateHash string
	ExpiresAt  int64

	// Results.
	Replaced string // the session replaced, if any; its resume tokens are revoked
	WasLive  bool   // the user had a live session
	Err      error  // ErrSessionLive (the policy refused) or ErrTokenUsed; nothing changed; or nil
}

// ClaimSessions runs claims in one transaction, in order (a later claim of
// the same user sees the earlier one): many logins cost one commit. A claim
// refused by the policy gets Err ErrSessionLive and changes nothing; the
// error returned is the transaction's, and then no claim took effect.
//
// A claim makes SessionID on GatewayID the session of UserID, as of Now
// (unix ms). A previous session is live iff its gateway's lease expires after
// Now; under PolicyReject a live one with another session id makes the claim
// fail with ErrSessionLive (claiming the same session again, as a retried
// login does, succeeds). Otherwise the claim replaces whatever was there and
// sets Replaced to the previous session id when there was one with a
// different id (live or not), so the caller can tell it to close. WasLive
// reports whether the user already had a live session (a retried claim of
// the same session counts as live): if not, the user just came online.
//
// In MySQL the user's session row is locked (SELECT ... FOR UPDATE) for the
// transaction, so concurrent claims of one user serialize; the lease is read
// without a lock, so logins through one gateway do not queue on its lease
// row. Claims racing on a user with no row yet may deadlock on the gap lock;
// InTx retries them.
func (s *Store) ClaimSessions(ctx context.Context, claims []*Claim) error {
	q := s.claimQueries()
	// MySQL: READ COMMITTED, so that reading a user's missing session row
	// takes no gap lock (concurrent first logins of different users then
	// deadlocked on the gap after the highest user id). The price: two
	// first claims of one user can both see no row; the upsert's affected
	// rows tell (1: inserted, 2: updated) and the loser runs again.
	var opts *sql.TxOptions
	if s.db.Dialect == sqldb.MySQL {
		opts = &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	err := s.db.InTxOpts(ctx, opts, func(tx *sql.Tx) error {
		for _, c := range claims {
			c.Replaced, c.WasLive, c.Err = "", false, nil
			var prevSession, prevGateway string
			err := s.txQueryRow(ctx, tx, q.session, c.UserID).Scan(&prevSession, &prevGateway)
			exists := err == nil
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if exists {
				if c.WasLive, err = s.leaseLive(ctx, tx, prevGateway, c.Now); err != nil {
					return err
				}
				if c.WasLive && prevSession != c.SessionID && c.Policy == PolicyReject {
					c.Err = ErrSessionLive
					continue
				}
			}
			if c.RotateHash != "" {
				// The claim's first write: if the token is gone (a
				// concurrent resume used it), nothing has changed.
				res, err := s.txExec(ctx, tx, q.rotate, c.IssueHash, c.SessionID, c.RotateHash, c.UserID)
				if err != nil {
					return err
				}
				if n, err := res.RowsAffected(); err != nil {
					return err
				} else if n != 1 {
					c.Err = ErrTokenUsed
					continue
				}
			}
			res, err := s.txExec(ctx, tx, q.upsert, c.UserID, c.SessionID, c.GatewayID, c.Now)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err == nil && !exists && n != 1 && s.db.Dialect == sqldb.MySQL {
				return sqldb.ErrConflict // another claim inserted the row meanwhile
			}
			if exists && prevSession != c.SessionID {
				c.Replaced = prevSession
			}
			if c.IssueHash != "" && c.RotateHash == "" {
				if _, err := s.txExec(ctx, tx, q.issue,
					c.IssueHash, c.UserID, c.SessionID, c.ExpiresAt); err != nil {
					return err
				}
			}
			if c.Replaced != "" {
				// The replaced session cannot come back with its token and
				// kick this one in turn (a resume rotated its own token
				// above, now this session's).
				if _, err := s.txExec(ctx, tx, q.revoke, c.UserID, c.Replaced); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("claim %d session(s): %w", len(claims), err)
	}
	return nil
}

// claimSQL is the text of ClaimSessions' statements in the store's dialect.
type claimSQL struct {
	session, lease, upsert, issue, rotate, revoke string
}

func (s *Store) claimQueries() claimSQL {
	q := claimSQL{
		session: `SELECT session_id, gateway_id FROM sessions WHERE user_id = ?`,
		lease:   `SELECT expires_at FROM gateways WHERE gateway_id = ?`,
		upsert: `INSERT INTO sessions (user_id, session_id, gateway_id, started_at) VALUES (?, ?, ?, ?)
		ON CONFLICT(user_id) DO UPDATE SET session_id = excluded.session_id,
			gateway_id = excluded.gateway_id, started_at = excluded.started_at`,
		issue:  `INSERT INTO resume_tokens (token_hash, user_id, session_id, expires_at) VALUES (?, ?, ?, ?)`,
		rotate: `UPDATE resume_tokens SET token_hash = ?, session_id = ? WHERE token_hash = ? AND user_id = ?`,
		revoke: `DELETE FROM resume_tokens WHERE user_id = ? AND session_id = ?`,
	}
	if s.db.Dialect == sqldb.MySQL {
		q.session += ` FOR UPDATE`
		q.upsert = `INSERT INTO sessions (user_id, session_id, gateway_id, started_at) VALUES (?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE session_id = VALUES(session_id),
			gateway_id = VALUES(gateway_id), started_at = VALUES(started_at)`
	}
	return q
}

// Prepare prepares the statements of the login path once (call it after
// Migrate).
func (s *Store) Prepare(ctx context.Context) error {
	q := s.claimQueries()
	return s.db.PrepareWrites(ctx, q.session, q.lease, q.upsert, q.issue, q.rotate, q.revoke)
}

// txExec and txQueryRow run a fixed statement in tx, prepared once.
func (s *Store) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	st, err := s.db.TxStmt(ctx, tx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (s *Store) txQueryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	st, err := s.db.TxStmt(ctx, tx, query)
	if err != nil {
		return tx.QueryRowContext(ctx, query, args...) // reports the error at Scan
	}
	return st.QueryRowContext(ctx, args...)
}

// leaseLive reports whether gatewayID's lease expires after now.
func (s *Store) leaseLive(ctx context.Context, tx *sql.Tx, gatewayID string, now int64) (bool, error) {
	var expiresAt int64
	err := s.txQueryRow(ctx, tx, s.claimQueries().lease, gatewayID).Scan(&expiresAt)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return expiresAt > now, nil
}

// ReleaseSessions ends each session that is still its user's, in one
// transaction (a session that was replaced releasing itself leaves its
// successor alone), and returns the users whose session ended.
func (s *Store) ReleaseSessions(ctx context.Context, refs []SessionRef) ([]int64, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	args := make([]any, 0, 2*len(refs))
	rows := make([]string, len(refs))
	for i, r := range refs {
		args = append(args, r.UserID, r.SessionID)
		rows[i] = "(?,?)"
	}
	in := `(user_id, session_id) IN (` + strings.Join(rows, ",") + `)`
	var ended []int64
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if ended, err = queryIDs(ctx, tx, `SELECT user_id FROM sessions WHERE `+in+s.forUpdate(), args...); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM sessions WHERE `+in, args...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("release %d sessions: %w", len(refs), err)
	}
	return ended, nil
}

// GatewayBeat sets gatewayID's lease to expire at expiresAt (unix ms). It
// reports whether the lease is new: at a gateway's start, or after its lease
// expired and its sessions were ended (ExpireLeases) - the gateway must then
// drop the sessions it still holds.
func (s *Store) GatewayBeat(ctx context.Context, gatewayID string, expiresAt int64) (created bool, err error) {
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE gateways SET expires_at = ? WHERE gateway_id = ?`, expiresAt, gatewayID)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if created = n == 0; !created {
			return nil
		}
		// MySQL counts an UPDATE that changes nothing as 0 rows: the row may
		// exist with the same expiry. An upsert settles both cases.
		q := `INSERT INTO gateways (gateway_id, expires_at) VALUES (?, ?)
			ON CONFLICT(gateway_id) DO UPDATE SET expires_at = excluded.expires_at`
		if s.db.Dialect == sqldb.MySQL {
			q = `INSERT INTO gateways (gateway_id, expires_at) VALUES (?, ?)
			ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)`
		}
		res, err = tx.ExecContext(ctx, q, gatewayID, expiresAt)
		if err != nil {
			return err
		}
		// MySQL: 1 = inserted, 0 or 2 = the row was there.
		if s.db.Dialect == sqldb.MySQL {
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			created = n == 1
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("gateway %q beat: %w", gatewayID, err)
	}
	return created, nil
}

// GatewayLeave ends every session on gatewayID and drops its lease. It
// returns the users whose sessions ended.
func (s *Store) GatewayLeave(ctx context.Context, gatewayID string) ([]int64, error) {
	var users []int64
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		users, err = queryIDs(ctx, tx, `SELECT user_id FROM sessions WHERE gateway_id = ?`+s.forUpdate(), gatewayID)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM sessions WHERE gateway_id = ?`, gatewayID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM gateways WHERE gateway_id = ?`, gatewayID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("gateway %q leave: %w", gatewayID, err)
	}
	return users, nil
}

// ExpireLeases ends the sessions of every gateway whose lease expired at or
// before now (unix ms) and drops those leases, returning the users whose
// sessions ended. Several service instances may run it at once: the
// sessions are read with a locking read, so each user is returned once.
func (s *Store) ExpireLeases(ctx context.Context, now int64) ([]int64, error) {
	var users []int64
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		users, err = queryIDs(ctx, tx,
			`SELECT s.user_id FROM sessions s JOIN gateways g ON g.gateway_id = s.gateway_id
				WHERE g.expires_at <= ?`+s.forUpdate(), now)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM sessions WHERE gateway_id IN
				(SELECT gateway_id FROM gateways WHERE expires_at <= ?)`, now); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM gateways WHERE expires_at <= ?`, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("expire leases at %d: %w", now, err)
	}
	return users, nil
}

func (s *Store) forUpdate() string {
	if s.db.Dialect == sqldb.MySQL {
		return " FOR UPDATE"
	}
	return ""
}

func queryIDs(ctx context.Context, tx *sql.Tx, q string, args ...any) ([]int64, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Cleanup removes the leases that expired before cutoff (unix ms) with their
// sessions, and sessions started before cutoff on a gateway that has no lease
// at all (it never beat). It returns how many sessions and leases it removed.
func (s *Store) Cleanup(ctx context.Context, cutoff int64) (sessions, gateways int64, err error) {
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`DELETE FROM sessions WHERE gateway_id IN
				(SELECT gateway_id FROM gateways WHERE expires_at < ?)`, cutoff)
		if err != nil {
			return err
		}
		expired, err := res.RowsAffected()
		if err != nil {
			return err
		}
		res, err = tx.ExecContext(ctx,
			`DELETE FROM sessions WHERE started_at < ? AND NOT EXISTS
				(SELECT 1 FROM gateways g WHERE g.gateway_id = sessions.gateway_id)`, cutoff)
		if err != nil {
			return err
		}
		orphans, err := res.RowsAffected()
		if err != nil {
			return err
		}
		res, err = tx.ExecContext(ctx, `DELETE FROM gateways WHERE expires_at < ?`, cutoff)
		if err != nil {
			return err
		}
		leases, err := res.RowsAffected()
		if err != nil {
			return err
		}
		sessions, gateways = expired+orphans, leases
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("clean up leases expired before %d: %w", cutoff, err)
	}
	return sessions, gateways, nil
}

// SessionRef is a user's session.
type SessionRef struct {
	UserID    int64
	SessionID string
}

// GatewaySessions returns up to limit sessions recorded for gatewayID, in
// user id order after afterUserID.
func (s *Store) GatewaySessions(ctx context.Context, gatewayID string, afterUserID int64, limit int) ([]SessionRef, error) {
	rows, err := s.db.ReadQuery(ctx,
		`SELECT user_id, session_id FROM sessions WHERE gateway_id = ? AND user_id > ? ORDER BY user_id LIMIT ?`,
		gatewayID, afterUserID, limit)
	if err != nil {
		return nil, fmt.Errorf("sessions of gateway %q: %w", gatewayID, err)
	}
	defer rows.Close()
	var out []SessionRef
	for rows.Next() {
		var r SessionRef
		if err := rows.Scan(&r.UserID, &r.SessionID); err != nil {
			return nil, fmt.Errorf("sessions of gateway %q: %w", gatewayID, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sessions of gateway %q: %w", gatewayID, err)
	}
	return out, nil
}

// Online returns the ids among ids that have a live session, in id order.
// Callers bound the number of ids.
func (s *Store) Online(ctx context.Context, ids []int64) ([]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := append(int64Args(ids), time.Now().UnixMilli())
	rows, err := s.db.ReadQueryOnce(ctx,
		`SELECT s.user_id FROM sessions s JOIN gateways g ON g.gateway_id = s.gateway_id
			WHERE s.user_id IN (`+sqldb.Placeholders(len(ids))+`) AND g.expires_at > ?
			ORDER BY s.user_id`,
		args...)
	if err != nil {
		return nil, fmt.Errorf("online of %d users: %w", len(ids), err)
	}
	defer rows.Close()
	var online []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("online of %d users: %w", len(ids), err)
		}
		online = append(online, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("online of %d users: %w", len(ids), err)
	}
	return online, nil
}

// Profile is a user with presence.
type Profile struct {
	ID     int64
	Name   string
	Online bool
}

// Profiles returns the users among ids that exist, in id order, each with
// whether they have a live session at now (unix ms). One query whatever the
// number of ids; callers bound it.
func (s *Store) Profiles(ctx context.Context, ids []int64, now int64) ([]Profile, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := append([]any{now}, int64Args(ids)...)
	rows, err := s.db.ReadQueryOnce(ctx,
		`SELECT u.id, u.name, CASE WHEN g.expires_at > ? THEN 1 ELSE 0 END
			FROM users u
			LEFT JOIN sessions s ON s.user_id = u.id
			LEFT JOIN gateways g ON g.gateway_id = s.gateway_id
			WHERE u.id IN (`+sqldb.Placeholders(len(ids))+`) ORDER BY u.id`,
		args...)
	if err != nil {
		return nil, fmt.Errorf("profiles of %d users: %w", len(ids), err)
	}
	defer rows.Close()
	var out []Profile
	for rows.Next() {
		var p Profile
		var online int
		if err := rows.Scan(&p.ID, &p.Name, &online); err != nil {
			return nil, fmt.Errorf("profiles of %d users: %w", len(ids), err)
		}
		p.Online = online == 1
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("profiles of %d users: %w", len(ids), err)
	}
	return out, nil
}

func int64Args(ids []int64) []any {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return args
}
