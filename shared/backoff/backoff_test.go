package backoff_test

import (
	"context"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/backoff"
)

// TestNext: each pause lies between half and the whole of its step, and
// the steps double from Min up to Max.
func TestNext(t *testing.T) {
	b := backoff.New(10*time.Millisecond, 70*time.Millisecond)
	steps := []time.Duration{10, 20, 40, 70, 70, 70}
	for round := range 2 {
		for i, s := range steps {
			s *= time.Millisecond
			if d := b.Next(); d < s/2 || d > s {
				t.Fatalf("round %d pause %d: %v, want between %v and %v", round, i, d, s/2, s)
			}
		}
		b.Reset()
	}
}

// TestJitter: pauses differ (the clients of a dead component do not come
// back in step).
func TestJitter(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[backoff.Jitter(time.Second)] = true
	}
	if len(seen) < 50 {
		t.Errorf("%d distinct pauses of 100, want random ones", len(seen))
	}
	if d := backoff.Jitter(0); d != 0 {
		t.Errorf("Jitter(0) = %v", d)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := backoff.New(time.Hour, time.Hour)
	if b.Wait(ctx, 0) {
		t.Error("Wait returned true after its context ended")
	}
	if !b.Wait(context.Background(), time.Millisecond) {
		t.Error("Wait with a limit did not return true")
	}
}
