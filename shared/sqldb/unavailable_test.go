package sqldb_test

import (
	"context"
	"database/sql"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/sqldb"
)

func TestIsUnavailable(t *testing.T) {
	// A port nobody listens on: what a restarting MySQL looks like.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	db, err := sql.Open("mysql", "root@tcp("+addr+")/x?timeout=1s")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); !sqldb.IsUnavailable(err) {
		t.Errorf("MySQL down: IsUnavailable(%v) = false", err)
	}

	lite, err := sqldb.OpenSQLite(filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	_, err = lite.ExecContext(ctx, "SELEKT 1")
	if err == nil || sqldb.IsUnavailable(err) {
		t.Errorf("a bad query: IsUnavailable(%v) = true", err)
	}
	if sqldb.IsUnavailable(nil) {
		t.Error("IsUnavailable(nil) = true")
	}
}
