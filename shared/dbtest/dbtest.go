// Package dbtest gives tests real databases: a SQLite file in t.TempDir() and
// a fresh MySQL/MariaDB database, created for the test and dropped after it.
//
// MySQL is found through NATTER_TEST_MYSQL_DSN (a go-sql-driver DSN without a
// database name, e.g. "root@tcp(127.0.0.1:3306)/"); when unset, the local
// default root@tcp(127.0.0.1:3306)/ is tried. Without a reachable server the
// MySQL tests skip loudly, except when CI=true, where they fail.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/natter-chat/natter/shared/sqldb"
)

// DefaultMySQLDSN is tried when NATTER_TEST_MYSQL_DSN is not set.
const DefaultMySQLDSN = "root@tcp(127.0.0.1:3306)/"

// SQLite opens a new SQLite database file in the test's temp dir.
func SQLite(t testing.TB) *sqldb.DB {
	t.Helper()
	db, err := sqldb.OpenSQLite(filepath.Join(t.TempDir(), "natter.db"))
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// MySQLDSN returns the DSN of a new, empty MySQL database that is dropped
// when the test ends, or skips (fails under CI=true) without a server.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("NATTER_TEST_MYSQL_DSN")
	if base == "" {
		base = DefaultMySQLDSN
	}
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatalf("dbtest: NATTER_TEST_MYSQL_DSN: %v", err)
	}
	cfg.DBName = ""
	cfg.Timeout = 3 * time.Second
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = admin.PingContext(ctx)
		cancel()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("dbtest: MySQL/MariaDB at %s is required under CI=true: %v", cfg.Addr, err)
		}
		t.Skipf("dbtest: SKIPPING MySQL test: no MySQL/MariaDB at %s (set NATTER_TEST_MYSQL_DSN): %v", cfg.Addr, err)
	}
	var b [6]byte
	rand.Read(b[:])
	name := "natter_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		admin.Exec("DROP DATABASE IF EXISTS " + sqldb.QuoteIdent(name))
		admin.Close()
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}

// MySQL opens a new, empty MySQL database for the test.
func MySQL(t testing.TB) *sqldb.DB {
	t.Helper()
	dsn := MySQLDSN(t)
	db, err := sqldb.OpenMySQL(context.Background(), dsn, 16)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Each runs f once on SQLite and once on MySQL, as subtests.
func Each(t *testing.T, f func(t *testing.T, db *sqldb.DB)) {
	t.Run("sqlite", func(t *testing.T) { f(t, SQLite(t)) })
	t.Run("mysql", func(t *testing.T) { f(t, MySQL(t)) })
}

// Migrated migrates store's schema twice, as a first and a second start
// of a service would (the second must change nothing), and returns store;
// a failed migration fails the test.
func Migrated[S interface {
	Migrate(context.Context) error
}](t testing.TB, store S) S {
	t.Helper()
	if err := store.Migrate(context.Background()); err != nil {
		t.Fatalf("dbtest: migrate: %v", err)
	}
	if err := store.Migrate(context.Background()); err != nil {
		t.Fatalf("dbtest: migrate again: %v", err)
	}
	return store
}
