package dbflag_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// driverPackages are what opening a database links (database/sql itself
// comes with the Prometheus collectors and uuid, without a driver).
var driverPackages = []string{"modernc.org/sqlite", "github.com/go-sql-driver/mysql",
	"github.com/natter-chat/natter/shared/sqldb", "github.com/natter-chat/natter/shared/dbflag"}

// linked lists the packages the main package pkg links (go list -deps, in
// the workspace).
func linked(t *testing.T, pkg string) []string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go is not on PATH: %v", err)
	}
	cmd := exec.Command(goTool, "list", "-deps", pkg)
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func drivers(pkgs []string) []string {
	var out []string
	for _, p := range pkgs {
		for _, d := range driverPackages {
			if p == d || strings.HasPrefix(p, d+"/") {
				out = append(out, p)
			}
		}
	}
	return out
}

// TestGatewayLinksNoDatabaseDriver: natter-gateway never touches the
// database (docs/ARCHITECTURE.md), so it links no database driver, nor
// the packages that open one; a service does (which shows the check sees
// them).
func TestGatewayLinksNoDatabaseDriver(t *testing.T) {
	if d := drivers(linked(t, "github.com/natter-chat/natter/gateway/cmd/natter-gateway")); len(d) > 0 {
		t.Errorf("natter-gateway links %v (a database flag or open moved back into a package it imports?)", d)
	}
	if d := drivers(linked(t, "github.com/natter-chat/natter/services/user/cmd/natter-user")); len(d) < 3 {
		t.Errorf("natter-user links only %v of the database packages: the check would not see a driver", d)
	}
}
