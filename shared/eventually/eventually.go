// Package eventually waits in tests for a condition to come true, by
// polling, instead of sleeping for a guessed time.
package eventually

import (
	"testing"
	"time"
)

// pollInterval is how often a condition is checked.
const pollInterval = 5 * time.Millisecond

// NoError polls check until it returns nil, and fails the test with the
// last error check returned if d passes first: the failure says what was
// still wrong, not only what was awaited.
func NoError(t testing.TB, d time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %v", d, err)
		}
		<-tick.C
	}
}
