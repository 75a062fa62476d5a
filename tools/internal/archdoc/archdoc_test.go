package archdoc

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// root is the repository's root, three levels above this package.
const root = "../../.."

// codeMap returns the paths the code map names: the backquoted paths in the
// first column of its table. A path may be a glob (services/*/cmd/natter-*);
// one starting with ".../" continues the first path of its cell.
func codeMap(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(root, "docs", "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Code map\n")
	if !ok {
		t.Fatal("docs/ARCHITECTURE.md has no \"## Code map\" section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	quoted := regexp.MustCompile("`([^`]+)`")
	var paths []string
	for line := range strings.Lines(section) {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cell, _, _ := strings.Cut(line[1:], "|")
		first := ""
		for _, m := range quoted.FindAllStringSubmatch(cell, -1) {
			p := strings.TrimSuffix(m[1], "/")
			if rest, ok := strings.CutPrefix(p, ".../"); ok {
				p = path.Join(first, rest)
			} else if first == "" {
				first = p
			}
			paths = append(paths, p)
		}
	}
	if len(paths) == 0 {
		t.Fatal("the code map names no path")
	}
	return paths
}

// packageDirs returns every directory below root holding a .go file
// (testdata, hidden directories and node_modules left out).
func packageDirs(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") {
			rel, err := filepath.Rel(root, filepath.Dir(p))
			if err != nil {
				return err
			}
			seen[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for d := range seen {
		dirs = append(dirs, d)
	}
	slices.Sort(dirs)
	return dirs
}

func named(paths []string, dir string) bool {
	for _, p := range paths {
		if ok, _ := path.Match(p, dir); ok || p == dir {
			return true
		}
	}
	return false
}

// TestCodeMapNamesEveryPackage: a new package gets its line in the code map.
func TestCodeMapNamesEveryPackage(t *testing.T) {
	paths := codeMap(t)
	dirs := packageDirs(t)
	if len(dirs) < 10 {
		t.Fatalf("found only %d package directories below %s: %v", len(dirs), root, dirs)
	}
	for _, d := range dirs {
		if !named(paths, d) {
			t.Errorf("docs/ARCHITECTURE.md: the code map does not name %s", d)
		}
	}
}

// TestCodeMapPathsExist: a moved or removed package leaves no stale line.
func TestCodeMapPathsExist(t *testing.T) {
	for _, p := range codeMap(t) {
		matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(p)))
		if err != nil || len(matches) == 0 {
			t.Errorf("docs/ARCHITECTURE.md: the code map names %s, which does not exist", p)
		}
	}
}
