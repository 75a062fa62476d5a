// Package friendship stores who is friends with whom. Friendship is mutual:
// a friendship is two rows, (a, b) and (b, a), written and deleted together
// in one transaction, so both users always see each other. Every SQL
// statement of the friend service is in this file; all values are bound as
// parameters, only placeholder lists ("?,?,?") are built in code.
package friendship

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/natter-chat/natter/shared/sqldb"
)

// Component is the name the migrations are recorded under.
const Component = "friend"

// ChunkIDs bounds the ids in one FriendsOf statement.
const ChunkIDs = 1000

// migrations returns the schema, one entry per version. Never edit a version
// that has shipped; add a new one.
//
// The primary key (user_id, friend_id) answers "friends of" for any number
// of users with one index range per user.
func migrations() []sqldb.Migration {
	return []sqldb.Migration{{
		Version: 1,
		SQLite: []string{
			`CREATE TABLE IF NOT EXISTS friends (
				user_id INTEGER NOT NULL,
				friend_id INTEGER NOT NULL,
				created_at INTEGER NOT NULL,
				PRIMARY KEY (user_id, friend_id)
			) WITHOUT ROWID`,
		},
		MySQL: []string{
			`CREATE TABLE IF NOT EXISTS friends (
				user_id BIGINT NOT NULL,
				friend_id BIGINT NOT NULL,
				created_at BIGINT NOT NULL,
				PRIMARY KEY (user_id, friend_id)
			) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		},
	}}
}

// Store runs the friend service's queries.
type Store struct {
	db *sqldb.DB
	// friendsOfQueries counts the SELECT statements FriendsOf ran.
	friendsOfQueries atomic.Int64
}

// New returns a Store on db. Call Migrate before using it.
func New(db *sqldb.DB) *Store {
	return &Store{db: db}
}

// Migrate brings the schema up to date.
func (s *Store) Migrate(ctx context.Context) error {
	return s.db.Migrate(ctx, Component, migrations())
}

// insertIgnore is the dialect's INSERT that skips rows whose key exists.
func (s *Store) insertIgnore() string {
	if s.db.Dialect == sqldb.MySQL {
		return "INSERT IGNORE"
	}
	return "INSERT OR IGNORE"
}

// Add makes a and b friends of each other. Adding an existing friendship
// changes nothing (its created_at stays).
func (s *Store) Add(ctx context.Context, a, b int64) error {
	// Rows in key order: two adds of the same pair from both sides lock the
	// same rows in the same order and cannot deadlock.
	lo, hi := min(a, b), max(a, b)
	now := time.Now().UnixMilli()
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			s.insertIgnore()+` INTO friends (user_id, friend_id, created_at) VALUES (?, ?, ?), (?, ?, ?)`,
			lo, hi, now, hi, lo, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("add friendship %d-%d: %w", a, b, err)
	}
	return nil
}

// Remove ends the friendship of a and b in both directions. Removing a
// friendship that does not exist changes nothing.
func (s *Store) Remove(ctx context.Context, a, b int64) error {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`DELETE FROM friends WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)`,
			a, b, b, a)
		return err
	})
	if err != nil {
		return fmt.Errorf("remove friendship %d-%d: %w", a, b, err)
	}
	return nil
}

// List returns the ids of user's friends in ascending order.
func (s *Store) List(ctx context.Context, user int64) ([]int64, error) {
	rows, err := s.db.ReadQuery(ctx,
		`SELECT friend_id FROM friends WHERE user_id = ? ORDER BY friend_id`, user)
	if err != nil {
		return nil, fmt.Errorf("list friends of %d: %w", user, err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list friends of %d: %w", user, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list friends of %d: %w", user, err)
	}
	return ids, nil
}

// Pair is one direction of a friendship: FriendID is a friend of UserID.
type Pair struct {
	UserID   int64
	FriendID int64
}

// FriendsOf returns the friends of all users in ids, as pairs ordered by
// user and friend: one statement per ChunkIDs ids, however many friends
// they have. Duplicate ids are the caller's business (they yield their
// pairs twice).
func (s *Store) FriendsOf(ctx context.Context, ids []int64) ([]Pair, error) {
	var pairs []Pair
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), ChunkIDs)]
		ids = ids[len(chunk):]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		s.friendsOfQueries.Add(1)
		rows, err := s.db.ReadQueryOnce(ctx,
			`SELECT user_id, friend_id FROM friends WHERE user_id IN (`+sqldb.Placeholders(len(chunk))+`)
				ORDER BY user_id, friend_id`, args...)
		if err != nil {
			return nil, fmt.Errorf("friends of %d users: %w", len(chunk), err)
		}
		pairs, err = scanPairs(rows, pairs)
		if err != nil {
			return nil, fmt.Errorf("friends of %d users: %w", len(chunk), err)
		}
	}
	return pairs, nil
}

func scanPairs(rows *sql.Rows, pairs []Pair) ([]Pair, error) {
	defer rows.Close()
	for rows.Next() {
		var p Pair
		if err := rows.Scan(&p.UserID, &p.FriendID); err != nil {
			return nil, err
		}
		pairs = append(pairs, p)
	}
	return pairs, rows.Err()
}

// FriendsOfQueries reports how many statements FriendsOf has run, so that
// operators and tests can see that a fan-out costs one query per chunk,
// not one per user.
func (s *Store) FriendsOfQueries() int64 {
	return s.friendsOfQueries.Load()
}
