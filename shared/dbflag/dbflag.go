// Package dbflag opens the database a service's command-line flags select
// (--mysql-dsn or --mysql-dsn-file: MySQL/MariaDB; else --sqlite). It is
// apart from shared/cliflag so that only the binaries that open a database
// link the database drivers (natter-gateway does not).
package dbflag

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/shared/sqldb"
)

// Flags select the database: MySQL when --mysql-dsn is set, else SQLite.
func Flags(defaultSQLite string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: cliflag.MySQLDSN, EnvVars: []string{"NATTER_MYSQL_DSN"},
			Usage: "MySQL/MariaDB DSN, user:pass@tcp(host:3306)/dbname (the database is created if missing); empty means SQLite"},
		cliflag.MySQLDSNFileFlag(),
		&cli.StringFlag{Name: cliflag.SQLitePath, Value: defaultSQLite, EnvVars: []string{"NATTER_SQLITE"},
			Usage: "SQLite database file, used when no MySQL DSN is given (single machine only)"},
		&cli.IntFlag{Name: cliflag.DBConns, Value: 16, EnvVars: []string{"NATTER_DB_CONNS"},
			Usage: "MySQL connection pool size; also bounds concurrent request handlers"},
	}
}

// Open opens the database the flags select: MySQL with --mysql-dsn or
// --mysql-dsn-file, else SQLite.
func Open(ctx context.Context, c *cli.Context) (*sqldb.DB, error) {
	dsn, err := cliflag.MySQLDSNFromFlags(c)
	if err != nil {
		return nil, err
	}
	if dsn != "" {
		return sqldb.OpenMySQL(ctx, dsn, c.Int(cliflag.DBConns))
	}
	return sqldb.OpenSQLite(c.String(cliflag.SQLitePath))
}

// Concurrency is how many handlers a service should run at once for db.
func Concurrency(db *sqldb.DB, conns int) int {
	if db.Dialect == sqldb.SQLite {
		return 4
	}
	return conns
}
