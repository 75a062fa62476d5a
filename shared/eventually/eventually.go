// Package eventually waits in tests for a condition to come true, by
// polling, instead of sleeping for a guessed time.
package eventually

import (
	"testing"
	"time"
)

// pollInterval is how often a condition is checked.
const pollInterval = 5 * time.Millisecond

// True polls cond until it holds, and fails the test (naming what it waited
// for) if d passes first.
func True(t testing.TB, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}
