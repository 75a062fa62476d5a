package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

var (
	readmeLineRE = regexp.MustCompile(`^([a-z]+)([<>]) (.*)$`)
	// readmeVaries are the fields whose values the README shows as "...".
	readmeVaries = regexp.MustCompile(`"(mid|time|token)":"[^"]*"`)
)

// TestReadmeNetcat replays the README's netcat section against a fresh
// natter serve: every `name> ` line is sent on that user's connection (the
// first one opens it), every `name< ` line must be the next frame there
// (presence notices, which come whenever friends come and go, are
// skipped), with the values the README shows as "..." masked; nothing
// else may arrive. A README that shows a wrong reply, a request that is
// no longer answered so, or a forgotten reply fails it.
func TestReadmeNetcat(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "### With netcat or telnet")
	if start < 0 {
		t.Fatal(`README.md has no "### With netcat or telnet" section`)
	}
	section := text[start:]
	if end := strings.Index(section, "\n## "); end > 0 {
		section = section[:end]
	}
	addr := startProc(t, "natter", "serve", "--listen", anyPort, "--data", t.TempDir(), "--ws-listen", "", "--bcrypt-cost", "4").
		tcpAddr(logServes)

	clients := map[string]*client{}
	inBlock, steps := false, 0
	for i, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "```") {
			inBlock = !inBlock
			continue
		}
		m := readmeLineRE.FindStringSubmatch(line)
		if !inBlock || m == nil {
			continue
		}
		steps++
		name, op, body := m[1], m[2], m[3]
		c := clients[name]
		if c == nil {
			c = dial(t, addr, '\n', name)
			clients[name] = c
		}
		if op == ">" {
			c.send(body)
			continue
		}
		for {
			got, err := c.recvRaw(5 * time.Second)
			if err != nil {
				t.Fatalf("README netcat line %d: %s: want %s, got %v", i+1, name, body, err)
			}
			if strings.HasPrefix(got, `{"id":`) && strings.Contains(got, `"msgid":16`) && !strings.Contains(body, `"msgid":16`) {
				continue // a presence notice
			}
			if got = readmeVaries.ReplaceAllString(got, `"$1":"..."`); got != body {
				t.Fatalf("README netcat line %d: %s received\n  %s\nthe README shows\n  %s", i+1, name, got, body)
			}
			break
		}
	}
	if steps < 10 {
		t.Fatalf("only %d transcript lines in the README's netcat section", steps)
	}
	for name, c := range clients {
		for {
			got, err := c.recvRaw(300 * time.Millisecond)
			if err != nil {
				break
			}
			if !strings.Contains(got, `"msgid":16`) {
				t.Errorf("%s received %s, which the README does not show", name, got)
			}
		}
	}
}
