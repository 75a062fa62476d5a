package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

var shellShebang = regexp.MustCompile(`^#!.*(/|env )(ba|da)?sh(\s|$)`)

// TestVetChecksEveryShellScript: `make shellcheck` (part of make vet)
// covers every shell script in the repository: the files named *.sh and
// those whose #! line runs sh, bash or dash, found here independently of
// the Makefile.
func TestVetChecksEveryShellScript(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	ls := exec.Command("git", "ls-files")
	ls.Dir = root
	out, err := ls.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	var want []string
	for _, f := range strings.Fields(string(out)) {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue // deleted in the work tree
		}
		first, _, _ := bytes.Cut(data, []byte("\n"))
		if strings.HasSuffix(f, ".sh") || shellShebang.Match(first) {
			want = append(want, f)
		}
	}
	if len(want) < 3 {
		t.Fatalf("found only %v: the search is broken", want)
	}
	mk := exec.Command("make", "-s", "--no-print-directory", "shell-scripts")
	mk.Dir = root
	out, err = mk.Output()
	if err != nil {
		t.Fatalf("make shell-scripts: %v", err)
	}
	got := strings.Fields(string(out))
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("make shellcheck does not check %s (it checks %v)", w, got)
		}
	}
}
