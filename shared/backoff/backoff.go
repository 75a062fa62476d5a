// Package backoff spaces out retries: pauses that double from a first
// value up to a ceiling, each with jitter, so that the clients of a
// component that went away do not all come back at the same moment.
//
// Every retry loop in natter takes its pauses from a Backoff: NATS and
// database connects at start, the gateway's presence lease and session
// reconciliation, transactions retried after a conflict, requests answered
// "no responders", and the chat and load clients' reconnects.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff hands out the pauses of one retry loop. The zero value of the
// step starts at Min; a Backoff is not safe for concurrent use.
type Backoff struct {
	Min  time.Duration // the first step
	Max  time.Duration // the step stops doubling here (at least Min)
	step time.Duration // the next step; 0: Min
}

// New returns a Backoff whose steps double from min up to max.
func New(min, max time.Duration) Backoff { return Backoff{Min: min, Max: max} }

// Next returns the pause before the next attempt, the current step with
// jitter, and doubles the step up to Max.
func (b *Backoff) Next() time.Duration {
	if b.step <= 0 {
		b.step = b.Min
	}
	d := b.step
	b.step = min(2*b.step, max(b.Max, b.Min))
	return Jitter(d)
}

// Reset starts the steps again from Min (after an attempt that worked).
func (b *Backoff) Reset() { b.step = 0 }

// Wait sleeps for the next pause, or at most until limit if limit is
// positive; false: ctx ended first.
func (b *Backoff) Wait(ctx context.Context, limit time.Duration) bool {
	d := b.Next()
	if limit > 0 {
		d = min(d, limit)
	}
	return Sleep(ctx, d)
}

// Jitter is "equal jitter": half of d, plus a random part up to the other
// half.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d; false: ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
