//go:build linux

package loadgen

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParsePIDs(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"", nil, false},
		{"12", []int{12}, false},
		{"12,34", []int{12, 34}, false},
		{" 12, 34 ", []int{12, 34}, false},
		{"12,x", nil, true},
		{"0", nil, true},
		{"-3", nil, true},
	}
	for _, tt := range tests {
		got, err := ParsePIDs(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("ParsePIDs(%q) = %v, %v; want %v (error: %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestReadProcCPU burns CPU in this process and checks that /proc/self's
// reading follows getrusage's.
func TestReadProcCPU(t *testing.T) {
	pid := os.Getpid()
	before, err := readProcCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	ruBefore, ok := processCPU()
	if !ok {
		t.Fatal("getrusage failed")
	}
	x := 0
	for {
		for i := range 1 << 20 {
			x += i
		}
		if now, _ := processCPU(); now-ruBefore >= 300*time.Millisecond {
			break
		}
	}
	after, err := readProcCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	ruAfter, _ := processCPU()
	got, want := after-before, ruAfter-ruBefore
	// Ticks of 10 ms on both readings, and the two clocks are sampled a
	// moment apart.
	if d := got - want; d < -50*time.Millisecond || d > 50*time.Millisecond {
		t.Errorf("/proc/%d/stat says %v used, getrusage %v (x=%d)", pid, got, want, x)
	}
	if _, err := readProcCPU(1 << 30); err == nil {
		t.Error("reading a process that does not exist: no error")
	}
}

func TestServerCPUReport(t *testing.T) {
	pids := []int{10, 20}
	from := cpuReading{at: time.Unix(100, 0), cpu: []time.Duration{time.Second, 2 * time.Second}}
	to := cpuReading{at: time.Unix(110, 0), cpu: []time.Duration{3 * time.Second, 5 * time.Second}}
	sc := serverCPU(pids, from, to, "message", 50000)
	if sc.CPUS != 5 || sc.Cores != 0.5 || sc.MicrosPer != 100 {
		t.Errorf("got %.2f s, %.2f cores, %.1f us per message; want 5 s, 0.5 cores, 100 us", sc.CPUS, sc.Cores, sc.MicrosPer)
	}
	if len(sc.Processes) != 2 || sc.Processes[0].MicrosPer != 40 || sc.Processes[1].MicrosPer != 60 {
		t.Errorf("per process: %+v, want 40 and 60 us", sc.Processes)
	}
	var b strings.Builder
	writeServerCPU(rowWriter(&b), sc)
	for _, want := range []string{"server cpu", "5.00 s", "50% of one core", "server us/message", "100.0 us", "10: 40.0", "20: 60.0"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, b.String())
		}
	}
}
