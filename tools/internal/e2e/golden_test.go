package e2e

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the expected frames in testdata/*.txt with what the gateway sent")

var (
	uuidRE  = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	tokenRE = regexp.MustCompile(`"token":"[A-Za-z0-9_-]{43}"`)
	// The server sets every chat's time (a client's is dropped): plain, and
	// inside the legacy LOGIN_ACK's JSON-encoded strings.
	timeRE        = regexp.MustCompile(`"time":"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"`)
	escapedTimeRE = regexp.MustCompile(`\\"time\\":\\"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\\"`)
)

// TestGolden replays the wire transcripts in testdata/ against a fresh
// cluster and compares every frame byte for byte (server ids normalized to
// <mid>, resume tokens to <token>, chat times, the server's clock, to
// <time>). Lines:
//
//	open NAME nul|nl GATEWAY   connect NAME to gateway 0 or 1 with that framing
//	NAME> FRAME                 NAME sends FRAME
//	NAME< FRAME                 the next frame NAME receives is exactly FRAME
//	NAME~                       NAME receives nothing for a moment
//	NAME close                  NAME closes its connection
//	# ...                       comment
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no golden transcripts in testdata/")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			c := newCluster(t, clusterOpts{})
			runGolden(t, file, func(name string, gw int, term byte) *client {
				return dial(t, c.gws[gw].Addr(), term, name)
			})
		})
	}
}

// serverTime reports whether v is a time the server set: the original
// client's format, within a minute of now.
func serverTime(v any) bool {
	s, _ := v.(string)
	t, err := time.ParseInLocation(time.DateTime, s, time.Local)
	return err == nil && time.Since(t).Abs() < time.Minute
}

// runGolden replays file; open connects a transcript's connection name to
// gateway gw (0 or 1) with frames ended by term.
func runGolden(t *testing.T, file string, open func(name string, gw int, term byte) *client) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]*client{}
	lines := strings.Split(string(data), "\n")
	for i, line := range lines {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if fields[0] == "open" {
			term := byte('\n')
			if fields[2] == "nul" {
				term = 0
			}
			gw := 0
			if len(fields) > 3 && fields[3] == "1" {
				gw = 1
			}
			clients[fields[1]] = open(fields[1], gw, term)
			continue
		}
		name, rest, op := splitOp(line)
		cl := clients[name]
		if cl == nil {
			t.Fatalf("%s:%d: unknown connection %q", file, i+1, name)
		}
		switch op {
		case '>':
			cl.send(rest)
		case '<':
			got, err := cl.recvRaw(5 * time.Second)
			// Presence notices are pushed whenever the friend service's
			// coalesced fan-out runs (up to 200 ms after a login or a
			// logout): on a full-dialect connection one may come before the
			// answer a line waits for. Unless the line waits for it.
			for err == nil && cl.term == '\n' && strings.Contains(got, `"msgid":16,`) && !strings.Contains(rest, `"msgid":16,`) {
				got, err = cl.recvRaw(5 * time.Second)
			}
			if err != nil {
				t.Fatalf("%s:%d: %s: want %s, got error %v", file, i+1, name, rest, err)
			}
			got = uuidRE.ReplaceAllString(got, "<mid>")
			got = tokenRE.ReplaceAllString(got, `"token":"<token>"`)
			got = timeRE.ReplaceAllString(got, `"time":"<time>"`)
			got = escapedTimeRE.ReplaceAllString(got, `\"time\":\"<time>\"`)
			if *update {
				lines[i] = name + "< " + got
			} else if got != rest {
				t.Fatalf("%s:%d: %s received\n  %s\nwant\n  %s", file, i+1, name, got, rest)
			}
		case '~':
			cl.quiet(150 * time.Millisecond)
		case 'x':
			cl.conn.Close()
		default:
			t.Fatalf("%s:%d: cannot parse %q", file, i+1, line)
		}
	}
	if *update {
		if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// splitOp splits "NAME> rest", "NAME< rest", "NAME~" and "NAME close".
func splitOp(line string) (name, rest string, op byte) {
	if n, ok := strings.CutSuffix(line, " close"); ok {
		return n, "", 'x'
	}
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '>', '<':
			return line[:i], strings.TrimPrefix(line[i+1:], " "), line[i]
		case '~':
			return line[:i], "", '~'
		}
	}
	return line, "", 0
}
