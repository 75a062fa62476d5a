package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat: USER_HZ, which
// is 100 on every Linux architecture Go runs on.
const userHZ = 100

// readProcCPU returns the CPU time (user + system, every thread) process
// pid has used so far, from /proc/<pid>/stat (Linux only).
func readProcCPU(pid int) (time.Duration, error) {
	p := "/proc/" + strconv.Itoa(pid) + "/stat"
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("read cpu time: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("read cpu time: %s: no command name", p)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("read cpu time: %s: %d fields", p, len(f)+2)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read cpu time: %s: %w", p, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// ParsePIDs reads a list of process ids: "123,456" (spaces allowed; empty:
// none).
func ParsePIDs(s string) ([]int, error) {
	var pids []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("server pid %q: want a process id", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// ServerCPU is the CPU time the server processes (Config.ServerPIDs) used
// in the measured window, read from /proc/PID/stat before and after it:
// user + system time of every thread, in USER_HZ ticks (10 ms).
type ServerCPU struct {
	Processes []ProcessCPU `json:"processes"`
	// CPUS is the sum over the processes, in seconds; Cores the same as a
	// share of one core over the window (1: one core busy).
	CPUS  float64 `json:"cpu_s"`
	Cores float64 `json:"cores"`
	// Per is what the CPU is divided by: "message" (one-to-one: delivered
	// messages), "delivery" (group: message x recipient), "login"
	// (login-storm, resume-storm) or "" (idle: nothing).
	Per string `json:"per,omitempty"`
	// Count is how many of them were done in the window; MicrosPer is
	// CPUS / Count in microseconds (0 when Count is 0).
	Count     int64   `json:"count,omitempty"`
	MicrosPer float64 `json:"us_per,omitempty"`
}

// ProcessCPU is one server process's share of ServerCPU.
type ProcessCPU struct {
	PID       int     `json:"pid"`
	CPUS      float64 `json:"cpu_s"`
	MicrosPer float64 `json:"us_per,omitempty"`
}

// cpuReading is the CPU time of each server process at one moment.
type cpuReading struct {
	at  time.Time
	cpu []time.Duration
}

// readServers reads the CPU time of pids now.
func readServers(pids []int) (cpuReading, error) {
	r := cpuReading{at: time.Now(), cpu: make([]time.Duration, len(pids))}
	for i, pid := range pids {
		d, err := readProcCPU(pid)
		if err != nil {
			return cpuReading{}, fmt.Errorf("server pid %d: %w", pid, err)
		}
		r.cpu[i] = d
	}
	return r, nil
}

// serverCPU is what pids used between two readings, per count things of
// kind per.
func serverCPU(pids []int, from, to cpuReading, per string, count int64) *ServerCPU {
	sc := &ServerCPU{Per: per, Count: count}
	for i, pid := range pids {
		used := (to.cpu[i] - from.cpu[i]).Seconds()
		pc := ProcessCPU{PID: pid, CPUS: used}
		if count > 0 {
			pc.MicrosPer = used * 1e6 / float64(count)
		}
		sc.Processes = append(sc.Processes, pc)
		sc.CPUS += used
	}
	if window := to.at.Sub(from.at); window > 0 {
		sc.Cores = sc.CPUS / window.Seconds()
	}
	if count > 0 {
		sc.MicrosPer = sc.CPUS * 1e6 / float64(count)
	}
	return sc
}

// windowMeter reads the server processes' CPU time when a measured window
// starts (at a time in the future) and when it ends.
type windowMeter struct {
	pids     []int
	cancel   chan struct{}
	started  chan struct{} // closed once from is read (or will never be)
	from, to cpuReading
	err      error
}

// startWindowMeter reads pids' CPU time at start (from a goroutine of its
// own, waited for by end). With no pids it does nothing.
func startWindowMeter(pids []int, start time.Time) *windowMeter {
	m := &windowMeter{pids: pids, cancel: make(chan struct{}), started: make(chan struct{})}
	if len(pids) == 0 {
		close(m.started)
		return m
	}
	go func() {
		defer close(m.started)
		t := time.NewTimer(time.Until(start))
		defer t.Stop()
		select {
		case <-t.C:
			m.from, m.err = readServers(pids)
		case <-m.cancel:
			m.err = errors.New("the measured window never started")
		}
	}()
	return m
}

// end reads pids' CPU time at the end of the window.
func (m *windowMeter) end() {
	close(m.cancel)
	<-m.started
	if len(m.pids) == 0 || m.err != nil {
		return
	}
	m.to, m.err = readServers(m.pids)
}

// result is what the servers used in the window, per count things of
// kind per; nil without pids.
func (m *windowMeter) result(per string, count int64) (*ServerCPU, error) {
	if len(m.pids) == 0 {
		return nil, nil
	}
	if m.err != nil {
		return nil, m.err
	}
	return serverCPU(m.pids, m.from, m.to, per, count), nil
}

// writeServerCPU writes the server CPU rows of a text report.
func writeServerCPU(row func(name, value, note string), sc *ServerCPU) {
	if sc == nil {
		return
	}
	pids := make([]string, len(sc.Processes))
	for i, p := range sc.Processes {
		pids[i] = fmt.Sprintf("%d: %.2f s", p.PID, p.CPUS)
	}
	row("server cpu", fmt.Sprintf("%.2f s", sc.CPUS), fmt.Sprintf("%.0f%% of one core in the window (pid %s)",
		100*sc.Cores, strings.Join(pids, ", ")))
	if sc.Per == "" {
		return
	}
	per := make([]string, len(sc.Processes))
	for i, p := range sc.Processes {
		per[i] = fmt.Sprintf("%d: %.1f", p.PID, p.MicrosPer)
	}
	row("server us/"+sc.Per, fmt.Sprintf("%.1f us", sc.MicrosPer), fmt.Sprintf("server CPU per %s, %d in the window (pid %s)",
		sc.Per, sc.Count, strings.Join(per, ", ")))
}
