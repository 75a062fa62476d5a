package natsreq

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// waiter carries the answer of one Request to its caller; waiters are
// pooled, with their done function built once.
type waiter struct {
	ch   chan answer
	done func(*nats.Msg, error)
}

type answer struct {
	msg *nats.Msg
	err error
}

var waiters = sync.Pool{New: func() any {
	w := &waiter{ch: make(chan answer, 1)}
	w.done = func(m *nats.Msg, err error) { w.ch <- answer{m, err} }
	return w
}}

// Request is Go that waits for the answer. The call's overall deadline is
// the sooner of ctx's deadline and opts.Timeout (the Requester's Timeout
// if 0). If ctx ends first, the call is abandoned (a late reply is
// dropped) and the error wraps api.ErrUnavailable and ctx's error.
func (r *Requester) Request(ctx context.Context, subject string, data []byte, opts CallOpts) (*nats.Msg, error) {
	if err := ctx.Err(); err != nil {
		return nil, wrapErr(subject, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, wrapErr(subject, context.DeadlineExceeded)
		}
		if opts.Timeout <= 0 {
			opts.Timeout = r.opts.Timeout
		}
		opts.Timeout = min(opts.Timeout, left)
	}
	w := waiters.Get().(*waiter)
	seq, err := r.start(subject, data, opts, w.done)
	if err != nil {
		waiters.Put(w)
		return nil, err
	}
	select {
	case a := <-w.ch:
		waiters.Put(w)
		return a.msg, a.err
	case <-ctx.Done():
	}
	if r.cancel(seq) {
		waiters.Put(w) // done will never be called
		return nil, wrapErr(subject, ctx.Err())
	}
	a := <-w.ch // done is running
	waiters.Put(w)
	return a.msg, a.err
}
