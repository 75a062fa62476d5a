// Package endpoint adapts typed Go functions into nats.go/micro handlers.
//
// A micro endpoint calls its handler from one goroutine, one request at a
// time. JSON hands each request to its own goroutine, bounded by a Runner
// (size it like the database pool), so a slow database call does not hold up
// the requests behind it. Errors that are *api.Error reach the caller with
// their code; any other error is logged with its context and answered as a
// generic internal error.
package endpoint

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/natter-chat/natter/shared/api"
)

// Runner bounds and tracks the goroutines running handlers.
type Runner struct {
	sem     chan struct{}
	wg      sync.WaitGroup
	log     *slog.Logger
	timeout time.Duration
}

// NewRunner returns a Runner that runs at most limit handlers at once, each
// with a context that expires after timeout.
func NewRunner(limit int, timeout time.Duration, log *slog.Logger) *Runner {
	if limit <= 0 {
		limit = 1
	}
	return &Runner{sem: make(chan struct{}, limit), log: log, timeout: timeout}
}

// Wait blocks until every handler started so far has returned. Call it after
// the micro service is stopped.
func (r *Runner) Wait() { r.wg.Wait() }

// Go runs fn on a new goroutine once a slot is free. It blocks the caller (the
// endpoint's delivery goroutine) while all slots are busy, which is the
// back-pressure: pending requests then queue in the subscription, bounded by
// micro.WithEndpointPendingLimits.
func (r *Runner) Go(fn func(ctx context.Context)) {
	r.sem <- struct{}{}
	r.wg.Add(1)
	go func() {
		defer func() { <-r.sem; r.wg.Done() }()
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		defer cancel()
		fn(ctx)
	}()
}

// JSON returns a micro handler that decodes the request into Req, runs fn on
// the runner and answers its result as JSON (or its error).
func JSON[Req, Resp any](r *Runner, name string, fn func(ctx context.Context, req *Req) (*Resp, error)) micro.Handler {
	return micro.HandlerFunc(func(m micro.Request) {
		var req Req
		if err := json.Unmarshal(m.Data(), &req); err != nil {
			RespondError(r.log, m, name, api.Errorf(api.CodeBadRequest, "malformed request: %v", err))
			return
		}
		r.Go(func(ctx context.Context) {
			resp, err := fn(ctx, &req)
			if err != nil {
				RespondError(r.log, m, name, err)
				return
			}
			Respond(r.log, m, name, resp)
		})
	})
}

// Respond answers m with v as JSON.
func Respond(log *slog.Logger, m micro.Request, name string, v any) {
	if err := m.RespondJSON(v); err != nil {
		log.Warn("respond", "endpoint", name, "err", err)
	}
}

// RespondError answers m with err: an *api.Error keeps its code and message;
// anything else is logged and answered as internal.
func RespondError(log *slog.Logger, m micro.Request, name string, err error) {
	var ae *api.Error
	if !errors.As(err, &ae) {
		log.Error("request failed", "endpoint", name, "err", err)
		ae = api.ErrInternal
	}
	if rerr := m.Error(string(ae.Code), ae.Message, nil); rerr != nil {
		log.Warn("respond", "endpoint", name, "err", rerr)
	}
}
