package manifest_test

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/natter-chat/natter/deployments/k8s/manifest"
	"github.com/natter-chat/natter/shared/natsconn"
	"github.com/natter-chat/natter/shared/subject"
)

var update = flag.Bool("update", false, "rewrite deployments/k8s/base/nats/auth.conf from the roles")

const authConfPath = root + "/deployments/k8s/base/nats/auth.conf"

// TestAuthConf: base/nats/auth.conf is what manifest.AuthConf generates
// from shared/subject (-update rewrites it).
func TestAuthConf(t *testing.T) {
	want := manifest.AuthConf()
	if *update {
		if err := os.WriteFile(authConfPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(authConfPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s is stale: run go test ./deployments/k8s/manifest -run TestAuthConf -update", authConfPath)
	}
}

// TestRolesCoverSubjects: every subject shared/subject defines (found in
// its source, so a new one cannot be forgotten) is published by some role
// and subscribed to by another, and every role is a natter binary.
func TestRolesCoverSubjects(t *testing.T) {
	subjects := subjectConstants(t)
	subjects = append(subjects, subject.User(42))
	roles := manifest.Roles()
	for _, s := range subjects {
		var pubs, subs []string
		for _, r := range roles {
			if matchesAny(r.Publish, s) {
				pubs = append(pubs, r.Name)
			}
			if matchesAny(r.Subscribe, s) {
				subs = append(subs, r.Name)
			}
		}
		if len(pubs) == 0 || len(subs) == 0 {
			t.Errorf("subject %s: published by %v, subscribed by %v: add it to manifest.Roles", s, pubs, subs)
		}
	}
	for _, r := range roles {
		if !slices.Contains(natterBinaries, r.Binary) {
			t.Errorf("role %s: binary %s is not a natter binary", r.Name, r.Binary)
		}
		// Whoever requests needs its own inbox (and no other); whoever
		// serves, discovery.
		requests := slices.ContainsFunc(r.Publish, func(p string) bool { return strings.HasPrefix(p, "natter.svc.") })
		if requests != slices.Contains(r.Subscribe, r.Inbox()) {
			t.Errorf("role %s: sends requests %v, subscribes to %s %v", r.Name, requests, r.Inbox(), !requests)
		}
		if want := natsconn.InboxPrefix(r.Binary) + ".>"; r.Inbox() != want {
			t.Errorf("role %s: inbox %s, but %s gets its replies on %s", r.Name, r.Inbox(), r.Binary, want)
		}
		if r.Responds != slices.Contains(r.Subscribe, manifest.Discovery) {
			t.Errorf("role %s: responds %v but discovery subscription %v", r.Name, r.Responds, !r.Responds)
		}
	}
}

// subjectConstants returns the values of the string constants in
// shared/subject that are subjects (natter.*).
func subjectConstants(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(root, "shared/subject/subject.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	var eval func(ast.Expr) (string, bool)
	eval = func(e ast.Expr) (string, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind == token.STRING {
				s, err := strconv.Unquote(e.Value)
				return s, err == nil
			}
		case *ast.Ident:
			v, ok := consts[e.Name]
			return v, ok
		case *ast.BinaryExpr:
			if e.Op == token.ADD {
				x, ok1 := eval(e.X)
				y, ok2 := eval(e.Y)
				return x + y, ok1 && ok2
			}
		case *ast.ParenExpr:
			return eval(e.X)
		}
		return "", false
	}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if i < len(vs.Values) {
					if v, ok := eval(vs.Values[i]); ok {
						consts[n.Name] = v
					}
				}
			}
		}
	}
	var out []string
	for name, v := range consts {
		if ast.IsExported(name) && strings.HasPrefix(v, "natter.") {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	if len(out) < 20 {
		t.Fatalf("found only %d subjects in shared/subject: %v", len(out), out)
	}
	return out
}

// matchesAny reports whether subj matches one of the NATS subject patterns
// (* one token, > one or more at the end).
func matchesAny(patterns []string, subj string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return subjectMatches(p, subj) })
}

func subjectMatches(pattern, subj string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(subj, ".")
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) || (p != "*" && p != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}
