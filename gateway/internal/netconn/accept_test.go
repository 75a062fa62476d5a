package netconn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// acceptChildEnv runs TestAcceptAtFDLimitChild for real.
const acceptChildEnv = "NATTER_TEST_ACCEPT_CHILD"

// TestAcceptAtFDLimit runs a Listener in a child process that has used up
// its file descriptors (RLIMIT_NOFILE lowered, the rest taken), connects to
// it so that every accept fails with EMFILE for three seconds, and counts
// the log lines: at most one a second, with the failures left out counted.
func TestAcceptAtFDLimit(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcceptAtFDLimitChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), acceptChildEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := bufio.NewReader(stdout)
	addr, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("child's address: %v\n%s", err, stderr.String())
	}
	conn, err := net.Dial("tcp", strings.TrimSpace(addr))
	if err != nil {
		t.Fatalf("dial the child: %v", err)
	}
	defer conn.Close()
	rest, _ := bufio.NewReader(out).ReadString(0)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\nstdout: %s\nstderr: %s", err, rest, stderr.String())
	}
	lines, suppressed := 0, 0
	for _, l := range strings.Split(stderr.String(), "\n") {
		var rec struct {
			Msg        string `json:"msg"`
			Err        string `json:"err"`
			Suppressed int    `json:"suppressed"`
		}
		if json.Unmarshal([]byte(l), &rec) != nil || !strings.HasPrefix(rec.Msg, "accept failed") {
			continue
		}
		if !strings.Contains(rec.Err, "too many open files") {
			t.Errorf("accept failed with %q; want EMFILE", rec.Err)
		}
		lines++
		suppressed += rec.Suppressed
	}
	t.Logf("%d lines in 3s, %d failures counted in them", lines, suppressed)
	if lines == 0 || lines > 5 {
		t.Fatalf("%d accept failure lines in 3s; want 1 to 5 (one a second)\n%s", lines, stderr.String())
	}
	if suppressed == 0 {
		t.Fatalf("no line counts the failures it left out\n%s", stderr.String())
	}
}

// TestAcceptAtFDLimitChild is the child of TestAcceptAtFDLimit.
func TestAcceptAtFDLimitChild(t *testing.T) {
	if os.Getenv(acceptChildEnv) == "" {
		t.Skip("run by TestAcceptAtFDLimit in a process of its own")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := syscall.Rlimit{Cur: 64, Max: 64}
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur); err == nil && cur.Max < lim.Max {
		lim.Max = cur.Max
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("lower RLIMIT_NOFILE: %v", err)
	}
	var held []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		held = append(held, f)
	}
	defer func() {
		for _, f := range held {
			f.Close()
		}
	}()
	l := NewListener(ln, "tcp", slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	fmt.Println(ln.Addr().String())
	// The parent connects at once; every accept fails from then on.
	stop := time.AfterFunc(3*time.Second, func() { l.Close() })
	defer stop.Stop()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}
