package roster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/sqldb"
)

func newStore(t *testing.T, db *sqldb.DB) *Store {
	t.Helper()
	return dbtest.Migrated(t, New(db))
}

// newGroup creates a group named "g" with desc, its creator creator, in a
// new store on db.
func newGroup(t *testing.T, db *sqldb.DB, creator int64, desc string) (*Store, int64) {
	t.Helper()
	s := newStore(t, db)
	g, err := s.Create(context.Background(), creator, "g", desc)
	if err != nil {
		t.Fatal(err)
	}
	return s, g
}

func version(t *testing.T, s *Store, group int64) int64 {
	t.Helper()
	v, err := s.Version(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkCount fails unless group's member count is its number of member rows.
func checkCount(t *testing.T, db *sqldb.DB, group int64) {
	t.Helper()
	var count, rows int
	if err := db.ReadQueryRow(context.Background(), `SELECT members FROM chat_groups WHERE id = ?`, group).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if err := db.ReadQueryRow(context.Background(), `SELECT COUNT(*) FROM group_members WHERE group_id = ?`, group).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if count != rows {
		t.Fatalf("group %d counts %d members and has %d", group, count, rows)
	}
}

func roles(t *testing.T, s *Store, group, asker int64) map[int64]string {
	t.Helper()
	gm, err := s.Members(context.Background(), group, asker)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]string{}
	for _, m := range gm.Members {
		out[m.UserID] = m.Role
	}
	return out
}

// TestVersionCountsMembershipChanges checks that every membership change, and
// only those, increments the group's version.
func TestVersionCountsMembershipChanges(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s, g := newGroup(t, db, 1, "")
		v := version(t, s, g)
		step := func(what string, changed bool, f func() error) {
			t.Helper()
			if err := f(); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			want := v
			if changed {
				want++
			}
			if got := version(t, s, g); got != want {
				t.Fatalf("%s: version %d, want %d", what, got, want)
			}
			checkCount(t, db, g)
			v = want
		}
		join := func(u int64) func() error {
			return func() error { _, _, err := s.Join(ctx, g, u, 10); return err }
		}
		step("join 2", true, join(2))
		step("join 2 again", false, join(2))
		step("creator joins again", false, join(1))
		step("2 leaves", true, func() error { _, err := s.Leave(ctx, g, 2); return err })
		step("creator leaves", true, func() error { _, err := s.Leave(ctx, g, 1); return err })
		step("rejoin the empty group", true, join(3))
		if _, err := s.Leave(ctx, g, 2); !errors.Is(err, ErrNotMember) {
			t.Errorf("leave by non-member: %v", err)
		}
		if got := version(t, s, g); got != v {
			t.Errorf("failed leave changed the version to %d", got)
		}
	})
}

func TestSuccession(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s, g := newGroup(t, db, 10, "")
		// 30 joins before 20, in a later millisecond: longest-standing beats
		// the lower id.
		joinAt := func(u int64) int64 {
			if _, _, err := s.Join(ctx, g, u, 10); err != nil {
				t.Fatal(err)
			}
			var at int64
			if err := db.ReadQueryRow(context.Background(), `SELECT joined_at FROM group_members WHERE group_id = ? AND user_id = ?`, g, u).Scan(&at); err != nil {
				t.Fatal(err)
			}
			return at
		}
		at := joinAt(30)
		for time.Now().UnixMilli() <= at {
			<-time.After(time.Millisecond)
		}
		joinAt(20)
		at25 := joinAt(25)
		if _, _, err := s.Join(ctx, g, 24, 10); err != nil {
			t.Fatal(err)
		}
		// 20 and 24 in the same millisecond as 25: the lower id wins a tie.
		if _, err := db.ExecContext(context.Background(), `UPDATE group_members SET joined_at = ? WHERE group_id = ? AND user_id IN (20, 24)`, at25, g); err != nil {
			t.Fatal(err)
		}

		for _, step := range []struct {
			leaver, successor int64
		}{
			{10, 30}, // the earliest joiner
			{20, 0},  // a normal member: no change of creator
			{30, 24}, // 24 and 25 joined in the same millisecond: lower id
			{24, 25},
			{25, 0}, // the last one: the group is empty
		} {
			got, err := s.Leave(ctx, g, step.leaver)
			if err != nil {
				t.Fatalf("leave %d: %v", step.leaver, err)
			}
			if got != step.successor {
				t.Errorf("leave %d: successor %d, want %d", step.leaver, got, step.successor)
			}
			if step.successor != 0 {
				r := roles(t, s, g, step.successor)
				n := 0
				for _, role := range r {
					if role == RoleCreator {
						n++
					}
				}
				if r[step.successor] != RoleCreator || n != 1 {
					t.Errorf("after %d left: roles %v", step.leaver, r)
				}
			}
		}
		// An empty group stays; its next member is its creator, the one
		// after that a normal member.
		if _, _, err := s.Join(ctx, g, 7, 10); err != nil {
			t.Fatal(err)
		}
		if _, role, err := s.Join(ctx, g, 8, 10); err != nil || role != RoleNormal {
			t.Fatalf("second joiner: %q, %v", role, err)
		}
		if r := roles(t, s, g, 7); r[7] != RoleCreator || r[8] != RoleNormal {
			t.Errorf("roles %v", r)
		}
	})
}

func TestErrors(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s, g := newGroup(t, db, 1, "d")
		if _, _, err := s.Join(ctx, 999, 1, 10); !errors.Is(err, ErrNoSuchGroup) {
			t.Errorf("join unknown: %v", err)
		}
		if _, err := s.Leave(ctx, 999, 1); !errors.Is(err, ErrNoSuchGroup) {
			t.Errorf("leave unknown: %v", err)
		}
		if _, err := s.Version(ctx, 999); !errors.Is(err, ErrNoSuchGroup) {
			t.Errorf("version unknown: %v", err)
		}
		if _, err := s.Members(ctx, 999, 1); !errors.Is(err, ErrNoSuchGroup) {
			t.Errorf("members unknown: %v", err)
		}
		if _, err := s.Members(ctx, g, 2); !errors.Is(err, ErrNotMember) {
			t.Errorf("members by non-member: %v", err)
		}
		for u := int64(2); u <= 3; u++ {
			if _, _, err := s.Join(ctx, g, u, 3); err != nil {
				t.Fatal(err)
			}
		}
		v := version(t, s, g)
		if _, _, err := s.Join(ctx, g, 4, 3); !errors.Is(err, ErrFull) {
			t.Errorf("join full group: %v", err)
		}
		if _, _, err := s.Join(ctx, g, 3, 3); err != nil {
			t.Errorf("member joining a full group again: %v", err)
		}
		if version(t, s, g) != v {
			t.Error("refused join changed the version")
		}
		checkCount(t, db, g)
	})
}

// TestConcurrentJoins has many users join one group at once: all are
// members, exactly one creator, and the version counts every join.
func TestConcurrentJoins(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s, g := newGroup(t, db, 1, "")
		if _, err := s.Leave(ctx, g, 1); err != nil { // empty: one joiner becomes creator
			t.Fatal(err)
		}
		v0 := version(t, s, g)
		const n = 40
		var wg sync.WaitGroup
		for u := int64(100); u < 100+n; u++ {
			wg.Go(func() {
				if _, _, err := s.Join(ctx, g, u, 1000); err != nil {
					t.Errorf("join %d: %v", u, err)
				}
			})
		}
		wg.Wait()
		ids, err := s.MemberIDs(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != n || !slices.IsSorted(ids) {
			t.Errorf("members %v", ids)
		}
		creators := 0
		for _, r := range roles(t, s, g, 100) {
			if r == RoleCreator {
				creators++
			}
		}
		if creators != 1 {
			t.Errorf("%d creators", creators)
		}
		checkCount(t, db, g)
		if v := version(t, s, g); v != v0+n {
			t.Errorf("version %d, want %d", v, v0+n)
		}
	})
}

func TestMine(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db)
		a, _ := s.Create(ctx, 1, "a", "first")
		b, _ := s.Create(ctx, 2, "b", "second")
		c, _ := s.Create(ctx, 3, "c", "not mine")
		for _, j := range []struct{ g, u int64 }{{b, 1}, {a, 4}, {c, 4}} {
			if _, _, err := s.Join(ctx, j.g, j.u, 10); err != nil {
				t.Fatal(err)
			}
		}
		mine, err := s.Mine(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		type gm struct {
			id      int64
			name    string
			members []int64
		}
		var got []gm
		for _, g := range mine {
			var ids []int64
			for _, m := range g.Members {
				ids = append(ids, m.UserID)
			}
			got = append(got, gm{g.ID, g.Name + "/" + g.Desc, ids})
		}
		want := []gm{{a, "a/first", []int64{1, 4}}, {b, "b/second", []int64{1, 2}}}
		if !slices.EqualFunc(got, want, func(x, y gm) bool {
			return x.id == y.id && x.name == y.name && slices.Equal(x.members, y.members)
		}) {
			t.Errorf("mine: %+v, want %+v", got, want)
		}
		if none, err := s.Mine(ctx, 99); err != nil || len(none) != 0 {
			t.Errorf("mine of a user in no group: %v, %v", none, err)
		}
	})
}
