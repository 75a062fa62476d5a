// Package roster stores natter's groups and their members. Every query of the
// group service is in this file.
//
// Each group has a version that every change to its membership increments in
// the transaction that makes the change. A reader that knows the version a
// member list was read at can therefore tell, with one primary-key query,
// whether that list is still current; the group service caches member lists
// on that basis.
//
// Membership changes of one group are serialized: in MySQL they lock the
// group's row (SELECT ... FOR UPDATE) before anything else, in SQLite every
// write transaction holds the database's single write lock.
package roster

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/natter-chat/natter/shared/sqldb"
)

// Component is the name the migrations are recorded under.
const Component = "group"

// Member roles as stored.
const (
	RoleCreator = "creator"
	RoleNormal  = "normal"
)

// Errors returned by the Store.
var (
	// ErrNoSuchGroup: no group with that id.
	ErrNoSuchGroup = errors.New("no such group")
	// ErrNotMember: the user is not a member of the group.
	ErrNotMember = errors.New("not a member")
	// ErrFull: the group has as many members as it may have.
	ErrFull = errors.New("group is full")
)

// migrations returns the schema, one entry per version. Never edit a version
// that has shipped; add a new one.
//
// The groups table is chat_groups because GROUPS is a reserved word in MySQL
// 8. Names are not unique: ids identify groups. members counts the group's
// members, kept in the transactions that change them, so a join checks the
// size limit without counting rows. group_members_joined serves the choice
// of a new creator (the longest-standing member).
func migrations() []sqldb.Migration {
	return []sqldb.Migration{{
		Version: 1,
		SQLite: []string{
			`CREATE TABLE IF NOT EXISTS chat_groups (
				id INTEGER PRIMARY KEY AUTOINCREMENT,
				name VARCHAR(50) NOT NULL,
				descr VARCHAR(200) NOT NULL,
				version BIGINT NOT NULL DEFAULT 0,
				members INTEGER NOT NULL DEFAULT 0,
				created_at BIGINT NOT NULL
			)`,
			`CREATE TABLE IF NOT EXISTS group_members (
				group_id BIGINT NOT NULL REFERENCES chat_groups (id),
				user_id BIGINT NOT NULL,
				role VARCHAR(10) NOT NULL CHECK (role IN ('creator', 'normal')),
				joined_at BIGINT NOT NULL,
				PRIMARY KEY (group_id, user_id)
			) WITHOUT ROWID`,
			`CREATE INDEX IF NOT EXISTS group_members_user ON group_members (user_id)`,
			`CREATE INDEX IF NOT EXISTS group_members_joined ON group_members (group_id, joined_at)`,
		},
		// utf8mb4_bin: names and descriptions round-trip byte for byte,
		// 4-byte characters (emoji, rarer CJK) included.
		MySQL: []string{
			`CREATE TABLE IF NOT EXISTS chat_groups (
				id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
				name VARCHAR(50) NOT NULL,
				descr VARCHAR(200) NOT NULL,
				version BIGINT NOT NULL DEFAULT 0,
				members INT NOT NULL DEFAULT 0,
				created_at BIGINT NOT NULL
			) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
			`CREATE TABLE IF NOT EXISTS group_members (
				group_id BIGINT NOT NULL,
				user_id BIGINT NOT NULL,
				role VARCHAR(10) NOT NULL,
				joined_at BIGINT NOT NULL,
				PRIMARY KEY (group_id, user_id),
				KEY group_members_user (user_id),
				KEY group_members_joined (group_id, joined_at),
				CONSTRAINT group_members_group FOREIGN KEY (group_id) REFERENCES chat_groups (id),
				CONSTRAINT group_members_role CHECK (role IN ('creator', 'normal'))
			) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
		},
	}}
}

// Store runs the group service's queries.
type Store struct {
	db *sqldb.DB
}

// New returns a Store on db. Call Migrate before using it.
func New(db *sqldb.DB) *Store {
	return &Store{db: db}
}

// Migrate brings the schema up to date, then prepares the statements of
// the login path (a login reads the user's groups).
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.db.Migrate(ctx, Component, migrations()); err != nil {
		return err
	}
	return s.db.PrepareReads(ctx, mineGroupsQuery, mineMembersQuery)
}

// Mine's queries: the user's groups, then their members.
const (
	mineGroupsQuery = `SELECT g.id, g.name, g.descr FROM group_members me
			JOIN chat_groups g ON g.id = me.group_id
			WHERE me.user_id = ? ORDER BY g.id`
	mineMembersQuery = `SELECT m.group_id, m.user_id, m.role, m.joined_at FROM group_members me
			JOIN group_members m ON m.group_id = me.group_id
			WHERE me.user_id = ? ORDER BY m.group_id, m.user_id`
)

// Group is a group's own record.
type Group struct {
	ID   int64
	Name string
	Desc string
}

// Member is one member of a group.
type Member struct {
	UserID   int64
	Role     string
	JoinedAt int64 // unix ms
}

// GroupMembers is a group with its members, by user id.
type GroupMembers struct {
	Group
	Members []Member
}

// Create creates a group with creator as its only member (role creator) in
// one transaction and returns the group's id.
func (s *Store) Create(ctx context.Context, creator int64, name, desc string) (int64, error) {
	var id int64
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		now := time.Now().UnixMilli()
		// Version 1: the creator joining is the first membership change.
		res, err := tx.ExecContext(ctx,
			`INSERT INTO chat_groups (name, descr, version, members, created_at) VALUES (?, ?, 1, 1, ?)`,
			name, desc, now)
		if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("last insert id: %w", err)
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO group_members (group_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)`,
			id, creator, RoleCreator, now)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("create group of %d: %w", creator, err)
	}
	return id, nil
}

// lockGroup reads the number of members of group id in tx, locking its row
// in MySQL for the rest of the transaction. It returns ErrNoSuchGroup for an
// unknown id.
func (s *Store) lockGroup(ctx context.Context, tx *sql.Tx, id int64) (members int, err error) {
	q := `SELECT members FROM chat_groups WHERE id = ?`
	if s.db.Dialect == sqldb.MySQL {
		q += ` FOR UPDATE`
	}
	err = tx.QueryRowContext(ctx, q, id).Scan(&members)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNoSuchGroup
	}
	return members, err
}

// changed records a membership change of group id that added delta members
// (1 or -1): it increments the version and adjusts the count. Every
// membership change calls it in its transaction.
func changed(ctx context.Context, tx *sql.Tx, id int64, delta int) error {
	_, err := tx.ExecContext(ctx,
		`UPDATE chat_groups SET version = version + 1, members = members + ? WHERE id = ?`, delta, id)
	return err
}

// memberRole returns user's role in group, or ErrNotMember.
func memberRole(ctx context.Context, tx *sql.Tx, group, user int64) (string, error) {
	var role string
	err := tx.QueryRowContext(ctx,
		`SELECT role FROM group_members WHERE group_id = ? AND user_id = ?`, group, user).Scan(&role)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotMember
	}
	return role, err
}

// Join makes user a member of group. A member joining again changes nothing
// (joined is false, role is the role they have). The joiner's role is normal,
// unless the group has no creator (everyone left), in which case the joiner
// becomes its creator. A group with maxMembers members refuses with ErrFull;
// an unknown group with ErrNoSuchGroup.
//
// A group has no creator exactly when it has no members: Create starts it
// with one, and Leave hands the role on whenever anyone remains.
func (s *Store) Join(ctx context.Context, group, user int64, maxMembers int) (joined bool, role string, err error) {
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		joined, role = false, ""
		members, err := s.lockGroup(ctx, tx, group)
		if err != nil {
			return err
		}
		r, err := memberRole(ctx, tx, group, user)
		if err == nil {
			role = r
			return nil
		}
		if !errors.Is(err, ErrNotMember) {
			return err
		}
		if members >= maxMembers {
			return ErrFull
		}
		role = RoleNormal
		if members == 0 {
			role = RoleCreator
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO group_members (group_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)`,
			group, user, role, time.Now().UnixMilli()); err != nil {
			return err
		}
		joined = true
		return changed(ctx, tx, group, 1)
	})
	if err != nil {
		return false, "", fmt.Errorf("join %d to group %d: %w", user, group, err)
	}
	return joined, role, nil
}

// Leave removes user from group (ErrNoSuchGroup, ErrNotMember). When the
// creator leaves, the longest-standing remaining member (earliest joined_at,
// then lowest user id) becomes creator in the same transaction; successor is
// that member's id, 0 when none was chosen. A group that loses its last
// member stays and can be joined again.
func (s *Store) Leave(ctx context.Context, group, user int64) (successor int64, err error) {
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		successor = 0
		if _, err := s.lockGroup(ctx, tx, group); err != nil {
			return err
		}
		role, err := memberRole(ctx, tx, group, user)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM group_members WHERE group_id = ? AND user_id = ?`, group, user); err != nil {
			return err
		}
		if role == RoleCreator {
			err := tx.QueryRowContext(ctx,
				`SELECT user_id FROM group_members WHERE group_id = ?
				ORDER BY joined_at, user_id LIMIT 1`, group).Scan(&successor)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				// The group is empty now; its next member becomes creator.
			case err != nil:
				return err
			default:
				if _, err := tx.ExecContext(ctx,
					`UPDATE group_members SET role = ? WHERE group_id = ? AND user_id = ?`,
					RoleCreator, group, successor); err != nil {
					return err
				}
			}
		}
		return changed(ctx, tx, group, -1)
	})
	if err != nil {
		return 0, fmt.Errorf("leave group %d by %d: %w", group, user, err)
	}
	return successor, nil
}

// Version returns group's membership version with one primary-key query, or
// ErrNoSuchGroup.
func (s *Store) Version(ctx context.Context, group int64) (int64, error) {
	var version int64
	err := s.db.ReadQueryRow(ctx, `SELECT version FROM chat_groups WHERE id = ?`, group).Scan(&version)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("version of group %d: %w", group, ErrNoSuchGroup)
	}
	if err != nil {
		return 0, fmt.Errorf("version of group %d: %w", group, err)
	}
	return version, nil
}

// MemberIDs returns the user ids of group's members in ascending order (none
// for an unknown group).
func (s *Store) MemberIDs(ctx context.Context, group int64) ([]int64, error) {
	rows, err := s.db.ReadQuery(ctx,
		`SELECT user_id FROM group_members WHERE group_id = ? ORDER BY user_id`, group)
	if err != nil {
		return nil, fmt.Errorf("members of group %d: %w", group, err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("members of group %d: %w", group, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("members of group %d: %w", group, err)
	}
	return ids, nil
}

// Members returns group with its members by user id, if user is one of them
// (ErrNotMember; ErrNoSuchGroup). Both reads are in one transaction, so the
// list is one consistent state.
func (s *Store) Members(ctx context.Context, group, user int64) (GroupMembers, error) {
	var gm GroupMembers
	err := s.db.ReadTx(ctx, func(tx *sql.Tx) error {
		gm = GroupMembers{}
		err := tx.QueryRowContext(ctx,
			`SELECT id, name, descr FROM chat_groups WHERE id = ?`, group).Scan(&gm.ID, &gm.Name, &gm.Desc)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoSuchGroup
		}
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx,
			`SELECT user_id, role, joined_at FROM group_members WHERE group_id = ? ORDER BY user_id`, group)
		if err != nil {
			return err
		}
		defer rows.Close()
		isMember := false
		for rows.Next() {
			var m Member
			if err := rows.Scan(&m.UserID, &m.Role, &m.JoinedAt); err != nil {
				return err
			}
			isMember = isMember || m.UserID == user
			gm.Members = append(gm.Members, m)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if !isMember {
			return ErrNotMember
		}
		return nil
	})
	if err != nil {
		return GroupMembers{}, fmt.Errorf("members of group %d for %d: %w", group, user, err)
	}
	return gm, nil
}

// Mine returns the groups user is a member of, by group id, each with all its
// members by user id: two queries (the groups, then the members of all of
// them) in one transaction, whatever the number of groups.
func (s *Store) Mine(ctx context.Context, user int64) ([]GroupMembers, error) {
	var out []GroupMembers
	err := s.db.ReadTx(ctx, func(tx *sql.Tx) error {
		out = nil
		groups, err := s.db.ReadTxStmt(ctx, tx, mineGroupsQuery)
		if err != nil {
			return err
		}
		rows, err := groups.QueryContext(ctx, user)
		if err != nil {
			return err
		}
		index := map[int64]int{}
		for rows.Next() {
			var g GroupMembers
			if err := rows.Scan(&g.ID, &g.Name, &g.Desc); err != nil {
				rows.Close()
				return err
			}
			index[g.ID] = len(out)
			out = append(out, g)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(out) == 0 {
			return nil
		}
		members, err := s.db.ReadTxStmt(ctx, tx, mineMembersQuery)
		if err != nil {
			return err
		}
		rows, err = members.QueryContext(ctx, user)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var gid int64
			var m Member
			if err := rows.Scan(&gid, &m.UserID, &m.Role, &m.JoinedAt); err != nil {
				return err
			}
			if i, ok := index[gid]; ok {
				out[i].Members = append(out[i].Members, m)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("groups of %d: %w", user, err)
	}
	return out, nil
}
