package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/metricstest"
	"github.com/natter-chat/natter/shared/sqldb"
)

// TestMetrics times a view's transactions and reads and counts its
// database errors by kind, but not the errors of the transaction's own
// function; the database it was taken from stays unobserved.
func TestMetrics(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		reg := prometheus.NewRegistry()
		m, err := sqldb.NewMetrics(reg, "test")
		if err != nil {
			t.Fatal(err)
		}
		v := db.WithMetrics(m)
		ctx := context.Background()
		if _, err := v.ExecContext(ctx, "CREATE TABLE t (id INT PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		insert := func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "INSERT INTO t (id) VALUES (1)")
			return err
		}
		if err := v.InTx(ctx, insert); err != nil {
			t.Fatal(err)
		}
		if err := v.InTx(ctx, insert); !sqldb.IsDuplicate(err) {
			t.Fatalf("second insert: %v, want a duplicate", err)
		}
		mine := errors.New("not the database's")
		if err := v.InTx(ctx, func(*sql.Tx) error { return mine }); !errors.Is(err, mine) {
			t.Fatalf("got %v, want %v", err, mine)
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if err := v.InTx(cancelled, insert); err == nil {
			t.Fatal("transaction on a cancelled context succeeded")
		}
		var n int
		if err := v.ReadQueryRow(ctx, "SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != 1 {
			t.Fatalf("count: %d, %v", n, err)
		}
		if err := v.ReadTx(ctx, func(tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&n)
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.InTx(ctx, insert); !sqldb.IsDuplicate(err) { // unobserved
			t.Fatalf("insert on the unobserved db: %v", err)
		}
		if _, err := v.ExecContext(ctx, "INSERT INTO nosuchtable VALUES (1)"); err == nil {
			t.Fatal("insert into no table succeeded")
		}

		for _, c := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"natter_db_operation_duration_seconds", map[string]string{"service": "test", "op": "tx"}, 4},
			{"natter_db_operation_duration_seconds", map[string]string{"op": "exec"}, 2},
			{"natter_db_operation_duration_seconds", map[string]string{"op": "read"}, 1},
			{"natter_db_operation_duration_seconds", map[string]string{"op": "read_tx"}, 1},
			{"natter_db_errors_total", map[string]string{"service": "test", "op": "tx", "kind": "duplicate"}, 1},
			{"natter_db_errors_total", map[string]string{"op": "tx", "kind": "timeout"}, 1},
			{"natter_db_errors_total", map[string]string{"op": "tx", "kind": "database"}, 0},
			{"natter_db_errors_total", map[string]string{"op": "exec", "kind": "database"}, 1},
			{"natter_db_tx_retries_total", map[string]string{"service": "test"}, 0},
		} {
			if got := metricstest.Value(t, reg, c.name, c.labels); got != c.want {
				t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
	})
}

// TestAlive pings until the database is closed.
func TestAlive(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		if err := db.Alive(context.Background()); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if err := db.Alive(context.Background()); err == nil {
			t.Fatal("a closed database is alive")
		}
	})
}
