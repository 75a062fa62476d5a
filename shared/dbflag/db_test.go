package dbflag_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/shared/dbflag"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/sqldb"
)

// TestMySQLDSNFile reads the DSN from --mysql-dsn-file (trailing newline
// trimmed) and opens MySQL with it; --mysql-dsn and --mysql-dsn-file at
// once, or a missing file, fail.
func TestMySQLDSNFile(t *testing.T) {
	dsn := dbtest.MySQLDSN(t)
	file := writeFile(t, "dsn", []byte(dsn+"\n"))
	flags := dbflag.Flags(filepath.Join(t.TempDir(), "unused.db"))

	c := flagContext(t, flags, "--mysql-dsn-file", file)
	if got, err := cliflag.MySQLDSNFromFlags(c); err != nil || got != dsn {
		t.Fatalf("DSN from file: %q, %v; want %q", got, err, dsn)
	}
	db, err := dbflag.Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Dialect != sqldb.MySQL {
		t.Errorf("dialect %v, want mysql", db.Dialect)
	}
	if err := db.Alive(context.Background()); err != nil {
		t.Error(err)
	}

	t.Setenv("NATTER_MYSQL_DSN_FILE", file) // the environment works as well
	c = flagContext(t, flags)
	if got, err := cliflag.MySQLDSNFromFlags(c); err != nil || got != dsn {
		t.Errorf("DSN from NATTER_MYSQL_DSN_FILE: %q, %v", got, err)
	}
	c = flagContext(t, flags, "--mysql-dsn", dsn)
	if _, err := dbflag.Open(context.Background(), c); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("--mysql-dsn with --mysql-dsn-file: %v", err)
	}
	t.Setenv("NATTER_MYSQL_DSN_FILE", "")
	c = flagContext(t, flags, "--mysql-dsn-file", filepath.Join(t.TempDir(), "missing"))
	if _, err := dbflag.Open(context.Background(), c); err == nil || !strings.Contains(err.Error(), "--mysql-dsn-file") {
		t.Errorf("missing DSN file: %v", err)
	}
}

// TestOpenDBSQLite opens SQLite without a DSN.
func TestOpenDBSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "natter.db")
	db, err := dbflag.Open(context.Background(), flagContext(t, dbflag.Flags(path)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Dialect != sqldb.SQLite {
		t.Errorf("dialect %v, want sqlite", db.Dialect)
	}
}

func flagContext(t *testing.T, flags []cli.Flag, args ...string) *cli.Context {
	t.Helper()
	set := flag.NewFlagSet("test", flag.ContinueOnError)
	for _, f := range flags {
		if err := f.Apply(set); err != nil {
			t.Fatal(err)
		}
	}
	if err := set.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cli.NewContext(cli.NewApp(), set, nil)
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
