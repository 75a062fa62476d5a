package loadgen

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Reasons a run stops early, as the context's cause.
var (
	ErrHardTimeout = errors.New("the run hit its hard timeout")
)

// timeline is a run's clock: warmup from start, the measured window from
// measure to stop, then the drain.
type timeline struct {
	start, measure, stop time.Time
}

func newTimeline(start time.Time, cfg Config) timeline {
	measure := start.Add(cfg.Warmup)
	return timeline{start: start, measure: measure, stop: measure.Add(cfg.Duration)}
}

func (tl timeline) phase(t time.Time) string {
	switch {
	case t.Before(tl.measure):
		return "warmup"
	case t.Before(tl.stop):
		return "measure"
	}
	return "drain"
}

// window is the length of the measured window that actually ran, if
// sending stopped at stopped.
func (tl timeline) window(stopped time.Time) time.Duration {
	if stopped.After(tl.stop) {
		stopped = tl.stop
	}
	return max(stopped.Sub(tl.measure), 0)
}

// startProgress writes a progress line to w every second until the returned
// stop function is called (which waits for the writer goroutine; calling it
// again does nothing). With w nil it does nothing.
func startProgress(w io.Writer, chk *Checker, tl timeline) (stop func()) {
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		prev, prevAt := chk.Progress(), time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				cur := chk.Progress()
				mid := prevAt.Add(now.Sub(prevAt) / 2) // the phase the second was mostly in
				fmt.Fprintln(w, progressLine(now.Sub(tl.start), tl.phase(mid), prev, cur, now.Sub(prevAt)))
				prev, prevAt = cur, now
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}
