package friendship

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/sqldb"
)

func newStore(t *testing.T, db *sqldb.DB) *Store {
	t.Helper()
	return dbtest.Migrated(t, New(db))
}

func list(t *testing.T, s *Store, user int64) []int64 {
	t.Helper()
	ids, err := s.List(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestAddRemoveMutual(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s := newStore(t, db)
		ctx := context.Background()
		for _, p := range [][2]int64{{1, 3}, {2, 1}, {1, 3}, {3, 1}, {1, 10}} {
			if err := s.Add(ctx, p[0], p[1]); err != nil {
				t.Fatalf("add %v: %v", p, err)
			}
		}
		want := map[int64][]int64{1: {2, 3, 10}, 2: {1}, 3: {1}, 10: {1}, 4: nil}
		for user, friends := range want {
			if got := list(t, s, user); !slices.Equal(got, friends) {
				t.Errorf("friends of %d: %v, want %v", user, got, friends)
			}
		}
		var rows int
		if err := db.ReadQueryRow(context.Background(), `SELECT COUNT(*) FROM friends`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != 6 {
			t.Errorf("%d rows, want 6 (each friendship twice, duplicates ignored)", rows)
		}

		// Either side removes both directions; removing again is a no-op.
		for _, p := range [][2]int64{{3, 1}, {1, 3}, {5, 6}} {
			if err := s.Remove(ctx, p[0], p[1]); err != nil {
				t.Fatalf("remove %v: %v", p, err)
			}
		}
		if got := list(t, s, 1); !slices.Equal(got, []int64{2, 10}) {
			t.Errorf("friends of 1 after remove: %v", got)
		}
		if got := list(t, s, 3); len(got) != 0 {
			t.Errorf("friends of 3 after remove: %v", got)
		}
	})
}

// TestConcurrentAdds races adds of the same pairs from both sides: no
// deadlock escapes, no duplicate, both directions present.
func TestConcurrentAdds(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s := newStore(t, db)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 64 {
			a, b := int64(1+i%4), int64(100)
			if i%2 == 1 {
				a, b = b, a
			}
			wg.Go(func() {
				if err := s.Add(context.Background(), a, b); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if got := list(t, s, 100); !slices.Equal(got, []int64{1, 2, 3, 4}) {
			t.Errorf("friends of 100: %v", got)
		}
		for u := int64(1); u <= 4; u++ {
			if got := list(t, s, u); !slices.Equal(got, []int64{100}) {
				t.Errorf("friends of %d: %v", u, got)
			}
		}
	})
}

// TestFriendsOf looks up many users' friends: one statement per ChunkIDs
// ids, whatever the number of friends.
func TestFriendsOf(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s := newStore(t, db)
		ctx := context.Background()
		// User 1 has 50 friends, 1001-1050; users 3 and 2500 (in the third
		// chunk) are friends; 7 has none.
		var want []Pair
		for f := int64(1001); f <= 1050; f++ {
			if err := s.Add(ctx, 1, f); err != nil {
				t.Fatal(err)
			}
			want = append(want, Pair{1, f})
		}
		if err := s.Add(ctx, 2500, 3); err != nil {
			t.Fatal(err)
		}
		want = append(want, Pair{3, 2500}, Pair{2500, 3})

		ids := make([]int64, 0, 2*ChunkIDs+500)
		for id := int64(1); id <= 2*ChunkIDs+500; id++ {
			if id <= 1000 || id > 1050 { // not the friends themselves
				ids = append(ids, id)
			}
		}
		before := s.FriendsOfQueries()
		got, err := s.FriendsOf(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("FriendsOf: %d pairs %v..., want %d pairs", len(got), got[:min(len(got), 3)], len(want))
		}
		chunks := int64((len(ids) + ChunkIDs - 1) / ChunkIDs)
		if n := s.FriendsOfQueries() - before; n != chunks {
			t.Errorf("FriendsOf of %d ids ran %d statements, want %d", len(ids), n, chunks)
		}

		got, err = s.FriendsOf(ctx, []int64{7})
		if err != nil || len(got) != 0 {
			t.Errorf("FriendsOf(7) = %v, %v; want none", got, err)
		}
		got, err = s.FriendsOf(ctx, nil)
		if err != nil || len(got) != 0 {
			t.Errorf("FriendsOf(nil) = %v, %v; want none", got, err)
		}
	})
}
