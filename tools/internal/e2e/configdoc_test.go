package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestConfigurationDocCoversEveryFlag checks that docs/configuration.md
// names every flag of every binary, with its environment variable, so the
// operator's reference cannot fall behind the code.
func TestConfigurationDocCoversEveryFlag(t *testing.T) {
	bin := binaries(t)
	_, file, _, _ := runtime.Caller(0)
	doc, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	flagRe := regexp.MustCompile(`(?m)^\s+(--[a-z0-9-]+)`)
	envRe := regexp.MustCompile(`\[\$(NATTER_[A-Z0-9_]+)\]`)
	for _, cmd := range [][]string{
		{"natter-gateway"}, {"natter-user"}, {"natter-offline"}, {"natter-friend"}, {"natter-group"},
		{"natter", "serve"}, {"natter", "chat"}, {"natter", "bench"},
	} {
		out, err := exec.Command(filepath.Join(bin, cmd[0]), append(cmd[1:], "--help")...).Output()
		if err != nil {
			t.Fatalf("%s --help: %v", strings.Join(cmd, " "), err)
		}
		help := string(out)
		_, opts, ok := strings.Cut(help, "OPTIONS:")
		if !ok {
			t.Fatalf("%s --help has no OPTIONS:\n%s", strings.Join(cmd, " "), help)
		}
		for _, m := range flagRe.FindAllStringSubmatch(opts, -1) {
			if f := m[1]; f != "--help" && f != "--version" && !strings.Contains(string(doc), "`"+f+"`") {
				t.Errorf("docs/configuration.md does not mention %s of %s", f, strings.Join(cmd, " "))
			}
		}
		for _, m := range envRe.FindAllStringSubmatch(opts, -1) {
			if !strings.Contains(string(doc), m[1]) {
				t.Errorf("docs/configuration.md does not mention %s (%s)", m[1], strings.Join(cmd, " "))
			}
		}
	}
}
