//go:build cluster

package clustertest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Each round runs both workloads for roundTime; the fault comes faultAfter
// into it (setup included) and the component is restarted restoreAfter later.
const (
	roundTime    = 30 * time.Second
	faultAfter   = 10 * time.Second
	restoreAfter = 4 * time.Second
)

type harness struct {
	t      *testing.T
	root   string
	script string
	bin    string
	env    []string
	dir    string // NATTER_CLUSTER_DIR
	base   int    // NATTER_CLUSTER_BASE_PORT
	addr   string // nginx
}

func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", "..", ".."))
}

// freeBase finds a base port with the 100 ports the cluster uses free, below
// the ephemeral range (Linux: from 32768), where outgoing connections could
// take one between the check and the use.
func freeBase(t *testing.T) int {
	for range 50 {
		base := 20000 + rand.IntN(120)*100
		free := true
		for p := base; p < base+100 && free; p++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				free = false
				continue
			}
			ln.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free range of 100 ports")
	return 0
}

// newHarness is a cluster.sh harness for t in a directory of the test's,
// with the binaries of $NATTER_BIN (else ./bin) and env added to the
// environment; the cluster is taken down at the end (after the tail of
// every log and, with status, the status table when the test failed).
func newHarness(t *testing.T, status bool, env ...string) *harness {
	t.Helper()
	h := &harness{t: t, root: repoRoot(t)}
	h.script = filepath.Join(h.root, "deployments", "local", "cluster.sh")
	h.bin = os.Getenv("NATTER_BIN")
	if h.bin == "" {
		h.bin = filepath.Join(h.root, "bin")
	}
	if _, err := os.Stat(filepath.Join(h.bin, "natter-gateway")); err != nil {
		t.Fatalf("binaries missing in %s (make build): %v", h.bin, err)
	}
	h.dir = filepath.Join(t.TempDir(), "cluster")
	h.env = append(append(os.Environ(),
		"NATTER_CLUSTER_DIR="+h.dir,
		"NATTER_BIN="+h.bin,
		"NATTER_CLUSTER_USER_ARGS=--bcrypt-cost 4",
	), env...)
	t.Cleanup(func() {
		if t.Failed() {
			if status {
				out, _ := h.clusterErr("status")
				t.Logf("cluster at failure:\n%s", out)
			}
			logs, _ := filepath.Glob(filepath.Join(h.dir, "log", "*.log"))
			for _, l := range logs {
				t.Logf("--- tail of %s:\n%s", filepath.Base(l), tail(l, 30))
			}
		}
		if out, err := h.clusterErr("down"); err != nil {
			t.Errorf("cluster.sh down: %v\n%s", err, out)
		}
	})
	return h
}

// up brings the cluster up on a free range of ports (freeBase). A port
// taken by another process between the check and its component's start
// fails cluster.sh up (its check of the ports, or the component cannot
// bind and exits; its readiness probes also check that each port is a
// listener of the component's own process, so nothing else answers for
// it): the cluster is taken down and brought up again on another range,
// 3 times at most. Restarted components keep their ports.
func (h *harness) up() {
	h.t.Helper()
	for attempt := 1; ; attempt++ {
		h.base = freeBase(h.t)
		out, err := h.clusterErr("up")
		if err == nil {
			return
		}
		taken := strings.Contains(out, "ports in use by something else") || h.logsSay("address already in use")
		if !taken || attempt == 3 {
			h.t.Fatalf("cluster.sh up (ports from %d, attempt %d): %v\n%s", h.base, attempt, err, out)
		}
		h.t.Logf("cluster.sh up: a port from %d was taken meanwhile; again on other ports", h.base)
		if out, err := h.clusterErr("down"); err != nil {
			h.t.Fatalf("cluster.sh down: %v\n%s", err, out)
		}
		os.RemoveAll(filepath.Join(h.dir, "log"))
	}
}

// logsSay reports whether a component's log contains s (in lower case).
func (h *harness) logsSay(s string) bool {
	logs, _ := filepath.Glob(filepath.Join(h.dir, "log", "*.log"))
	for _, l := range logs {
		if b, _ := os.ReadFile(l); bytes.Contains(bytes.ToLower(b), []byte(s)) {
			return true
		}
	}
	return false
}

func (h *harness) cluster(args ...string) string {
	h.t.Helper()
	out, err := h.clusterErr(args...)
	if err != nil {
		h.t.Fatalf("cluster.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (h *harness) clusterErr(args ...string) (string, error) {
	cmd := exec.Command(h.script, args...)
	cmd.Dir = h.root
	cmd.Env = append(h.env, "NATTER_CLUSTER_BASE_PORT="+strconv.Itoa(h.base))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// bench is one natter bench run in the background.
type bench struct {
	name string
	out  string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan error
}

func (h *harness) startBench(name string, args ...string) *bench {
	h.t.Helper()
	b := &bench{name: name, out: filepath.Join(h.t.TempDir(), name+".json"), log: &bytes.Buffer{}, done: make(chan error, 1)}
	args = append([]string{"bench", "--addr", h.addr, "--reconnect", "--json", "--out", b.out,
		"--warmup", "1s", "--duration", (roundTime - 5*time.Second).String(), "--drain", "60s"}, args...)
	b.cmd = exec.Command(filepath.Join(h.bin, "natter"), args...)
	b.cmd.Stdout = b.log
	b.cmd.Stderr = b.log
	if err := b.cmd.Start(); err != nil {
		h.t.Fatalf("start bench %s: %v", name, err)
	}
	go func() { b.done <- b.cmd.Wait() }()
	return b
}

// result waits for the run and checks its delivery report.
func (b *bench) result(t *testing.T) map[string]any {
	t.Helper()
	var err error
	select {
	case err = <-b.done:
	case <-time.After(5 * time.Minute):
		b.cmd.Process.Kill()
		t.Fatalf("bench %s did not finish\n%s", b.name, b.log)
	}
	data, rerr := os.ReadFile(b.out)
	if rerr != nil {
		t.Fatalf("bench %s: %v (exit: %v)\n%s", b.name, rerr, err, b.log)
	}
	var r map[string]any
	if jerr := json.Unmarshal(data, &r); jerr != nil {
		t.Fatalf("bench %s: %v\n%s", b.name, jerr, data)
	}
	num := func(k string) float64 { v, _ := r[k].(float64); return v }
	// A refused resume token would mean a session did not survive the fault.
	for _, k := range []string{"lost", "duplicated", "reordered", "given_up", "unexpected", "seq_errors",
		"password_relogins", "tokens_refused", "down_at_end"} {
		if num(k) != 0 {
			t.Errorf("bench %s: %s = %v", b.name, k, num(k))
		}
	}
	// A fault is a reason to retry (errno 110), never an internal error.
	if errnos, _ := r["retried_errnos"].(map[string]any); errnos["111"] != nil {
		t.Errorf("bench %s: senders were answered errno 111 (internal error) %v times", b.name, errnos["111"])
	}
	if num("delivered") == 0 {
		t.Errorf("bench %s delivered nothing", b.name)
	}
	if err != nil || r["ok"] != true {
		t.Errorf("bench %s failed (exit: %v)\n%s\n%s", b.name, err, data, b.log)
	}
	return r
}

func summary(r map[string]any) string {
	o, _ := r["outage_ms"].(map[string]any)
	return fmt.Sprintf("sent %v delivered %v; reconnects %v (resumed %v, password logins %v); without service: %v times, p50 %v ms, max %v ms; longest receive gap %v ms; send errors retried %v %v",
		r["sent"], r["delivered"], r["reconnects"], r["resumed"], r["password_relogins"],
		o["count"], o["p50"], o["max"], r["max_receive_gap_ms"], r["send_errors_retried"], r["retried_errnos"])
}

type fault struct {
	name    string
	inject  []string // cluster.sh commands, run in order
	restore []string
}

func TestClusterFaults(t *testing.T) {
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (.ci/run installs it): %v", tool, err)
		}
	}
	// Bench users send up to 20 frames/s each; nothing here is a flood.
	h := newHarness(t, true, "NATTER_CLUSTER_GATEWAY_ARGS=--drain-window 5s")
	start := time.Now()
	h.up()
	t.Logf("cluster up in %v", time.Since(start).Round(time.Second))
	for _, line := range strings.Split(h.cluster("env"), "\n") {
		if v, ok := strings.CutPrefix(line, "NATTER_CLUSTER_ADDR="); ok {
			h.addr = strings.TrimSpace(v)
		}
	}
	if h.addr == "" {
		t.Fatal("cluster.sh env printed no NATTER_CLUSTER_ADDR")
	}

	faults := []fault{
		{"no fault", nil, nil},
		{"SIGKILL gateway-1", []string{"kill gateway-1 KILL"}, []string{"start gateway-1"}},
		{"SIGTERM gateway-2 (lame duck)", []string{"kill gateway-2 TERM"}, []string{"start gateway-2"}},
		{"SIGKILL nats-2", []string{"kill nats-2 KILL"}, []string{"start nats-2"}},
		{"SIGKILL one instance of each service",
			[]string{"kill user-1 KILL", "kill offline-1 KILL", "kill friend-1 KILL", "kill group-1 KILL"},
			[]string{"start user-1", "start offline-1", "start friend-1", "start group-1"}},
		{"restart MySQL", []string{"kill mysql TERM"}, []string{"start mysql"}},
	}
	for _, f := range faults {
		ok := t.Run(f.name, func(t *testing.T) {
			h := *h
			h.t = t
			one := h.startBench("one-to-one", "--pairs", "20", "--mode", "open", "--rate", "200")
			grp := h.startBench("group", "--workload", "group", "--groups", "4", "--members", "10", "--senders", "2", "--rate", "40")
			time.Sleep(faultAfter)
			if f.inject != nil {
				t0 := time.Now()
				for _, c := range f.inject {
					h.cluster(strings.Fields(c)...)
				}
				t.Logf("%s: done in %v", f.name, time.Since(t0).Round(time.Millisecond))
				time.Sleep(restoreAfter)
				t0 = time.Now()
				for _, c := range f.restore {
					h.cluster(strings.Fields(c)...)
				}
				t.Logf("restored (%s) in %v", strings.Join(f.restore, ", "), time.Since(t0).Round(time.Millisecond))
			}
			r1, r2 := one.result(t), grp.result(t)
			t.Logf("one-to-one: %s", summary(r1))
			t.Logf("group:      %s", summary(r2))
			if out, err := h.clusterErr("status"); err != nil {
				t.Errorf("cluster not fully ready after the round:\n%s", out)
			}
		})
		if !ok {
			break
		}
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
