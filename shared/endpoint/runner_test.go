package endpoint_test

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/endpoint"
)

// TestRunnerReusesWorkers: a runner keeps at most limit goroutines however
// many handlers it runs, never runs more than limit at once, runs every one,
// and ends its goroutines on Close.
func TestRunnerReusesWorkers(t *testing.T) {
	const limit, jobs = 4, 2000
	before := runtime.NumGoroutine()
	r := endpoint.NewRunner(limit, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var running, most, done atomic.Int32
	var mu sync.Mutex
	maxGoroutines := 0
	ids := map[string]bool{} // the goroutines that ran handlers
	for range jobs {
		if !r.Go(func(ctx context.Context) {
			n := running.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			mu.Lock()
			maxGoroutines = max(maxGoroutines, runtime.NumGoroutine())
			ids[goroutineID()] = true
			mu.Unlock()
			running.Add(-1)
			done.Add(1)
		}) {
			t.Fatal("Go refused before Close")
		}
	}
	r.Close()
	if done.Load() != jobs {
		t.Fatalf("%d of %d handlers ran", done.Load(), jobs)
	}
	if most.Load() > limit {
		t.Errorf("%d handlers ran at once, limit %d", most.Load(), limit)
	}
	if len(ids) > limit {
		t.Errorf("handlers ran on %d goroutines, want at most %d (the workers)", len(ids), limit)
	}
	if extra := maxGoroutines - before; extra > limit {
		t.Errorf("%d goroutines more than before while running, want at most %d (one per worker)", extra, limit)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, %d before", n, before)
	}
	if r.Go(func(context.Context) {}) {
		t.Error("Go ran a handler after Close")
	}
}

// goroutineID is the calling goroutine's number, from its stack's header
// ("goroutine 42 [running]:").
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := strings.Fields(string(buf))
	if len(f) < 2 {
		return ""
	}
	return f[1]
}
