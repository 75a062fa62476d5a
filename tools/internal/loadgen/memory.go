package loadgen

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
)

// readRSS returns the resident memory of process pid (0: this process) in
// bytes, from VmRSS in /proc/<pid>/status (Linux only).
func readRSS(pid int) (int64, error) {
	p := "/proc/self/status"
	if pid > 0 {
		p = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("read resident memory: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest) // "12345 kB"
		if len(f) != 2 || string(f[1]) != "kB" {
			break
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			break
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("read resident memory: no VmRSS in %s", p)
}

// selfRSS returns this process's resident memory after a garbage collection
// that returns what it can to the system (so that it counts what the
// process holds, not garbage it has not collected yet); 0 where it cannot
// be read.
func selfRSS() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	n, err := readRSS(0)
	if err != nil {
		return 0
	}
	return n
}

// RSS is a process's resident memory at three points of an idle run, in
// bytes (0: could not be read).
type RSS struct {
	PID       int     `json:"pid,omitempty"`
	Before    int64   `json:"before_bytes"`    // after the registrations, before the connections were made
	Connected int64   `json:"connected_bytes"` // once every connection logged in
	End       int64   `json:"end_bytes"`       // after the idle period, before the connections were closed
	PerConn   float64 `json:"per_conn_bytes"`  // (connected - before) / connections established
}

func (r *RSS) perConn(established int64) {
	if established > 0 && r.Before > 0 && r.Connected > 0 {
		r.PerConn = float64(r.Connected-r.Before) / float64(established)
	}
}
