// Package logtest gives tests a logger that writes to the test's output
// under go test -v, and nowhere otherwise.
package logtest

import (
	"io"
	"log/slog"
	"testing"
)

// New returns a logger for t: records at level and above go to t.Output()
// when testing.Verbose(), and are discarded otherwise.
func New(t testing.TB, level slog.Level) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
	}
	// A real handler all the same, so that the records are still formatted
	// (and what they log still read, under -race).
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
