package sqldb

import (
	"context"
	"database/sql"
	"fmt"
)

// Migration is one schema version of a component. Each dialect has its own
// statements, run in order; DDL is not transactional in MySQL, so each
// statement should be safe to re-run (IF NOT EXISTS) in case a start-up died
// half-way.
type Migration struct {
	Version int
	SQLite  []string
	MySQL   []string
}

const migrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	component VARCHAR(64) NOT NULL,
	version INT NOT NULL,
	applied_at BIGINT NOT NULL,
	PRIMARY KEY (component, version)
)`

// Migrate applies the migrations of component that are not applied yet, in
// version order. Concurrent starts of several instances are serialized (a
// named lock in MySQL, the write lock in SQLite).
func (db *DB) Migrate(ctx context.Context, component string, ms []Migration) error {
	conn, err := db.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	defer conn.Close()
	if db.Dialect == MySQL {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK('natter_migrate', 60)").Scan(&got); err != nil || got.Int64 != 1 {
			return fmt.Errorf("migrate %s: take lock: %v", component, err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK('natter_migrate')")
	}
	if _, err := conn.ExecContext(ctx, migrationsTable); err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	applied := map[int]bool{}
	rows, err := conn.QueryContext(ctx, "SELECT version FROM schema_migrations WHERE component = ?", component)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("migrate %s: %w", component, err)
		}
		applied[v] = true
	}
	rows.Close()
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		stmts := m.SQLite
		if db.Dialect == MySQL {
			stmts = m.MySQL
		}
		for _, s := range stmts {
			if _, err := conn.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("migrate %s to v%d: %w", component, m.Version, err)
			}
		}
		if _, err := conn.ExecContext(ctx,
			"INSERT INTO schema_migrations (component, version, applied_at) VALUES (?, ?, ?)",
			component, m.Version, nowMillis()); err != nil {
			return fmt.Errorf("migrate %s to v%d: record: %w", component, m.Version, err)
		}
	}
	if db.wal != nil {
		// SQLite: the migrations' commits are synced like every other.
		if err := datasync(db.wal.path); err != nil {
			return fmt.Errorf("migrate %s: %w", component, err)
		}
	}
	return nil
}
