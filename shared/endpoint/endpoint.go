// Package endpoint adapts typed Go functions into nats.go/micro handlers.
//
// A micro endpoint calls its handler from one goroutine, one request at a
// time. JSON hands each request to its own goroutine, bounded by a Runner
// (size it like the database pool), so a slow database call does not hold up
// the requests behind it. Errors that are *api.Error reach the caller with
// their code; any other error is logged with its context and answered as a
// generic internal error.
//
// Answering from another goroutine than the handler's is only safe on a
// detached request (one that answers by publishing to the reply subject
// itself, as Add's handlers get): micro's own request records the outcome of
// Respond/Error in a field its delivery goroutine reads, unlocked, once the
// handler returns. Add registers a service's endpoints, described by Specs,
// with every handler detached; Stop stops them, waits for the requests
// already delivered to reach their handlers, and waits for the handlers.
// Start and Instance put these together with AddService: the one start and
// stop every service shares, with hooks for the service's own parts.
//
// Add also counts every request's answer and its latency in Metrics, in
// the detached request itself, so no handler has to; on a Service (see
// AddService) the same count is what $SRV.STATS answers.
//
// Error answers carry micro's headers as ADR-32 has them: the code's number
// in Nats-Service-Error-Code, the code's word and the message in
// Nats-Service-Error (api.Error.Header).
package endpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/sqldb"
)

// Runner bounds and tracks the goroutines running handlers. It keeps its
// worker goroutines (at most limit) instead of starting one per request: a
// handler that reaches SQLite grows its goroutine's stack to tens of KiB,
// and a new goroutine per request grew (copied) it again every time (9 %
// of the server's CPU in a resume storm).
type Runner struct {
	sem     chan struct{}
	jobs    chan func() // to an idle worker (unbuffered)
	quit    chan struct{}
	workers atomic.Int32
	limit   int32
	log     *slog.Logger
	timeout time.Duration

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// NewRunner returns a Runner that runs at most limit handlers at once, each
// with a context that expires after timeout.
func NewRunner(limit int, timeout time.Duration, log *slog.Logger) *Runner {
	if limit <= 0 {
		limit = 1
	}
	return &Runner{sem: make(chan struct{}, limit), jobs: make(chan func()), quit: make(chan struct{}),
		limit: int32(limit), log: log, timeout: timeout}
}

// Close refuses new work and waits until every handler started so far has
// returned, then ends the workers. Call it after the micro service is
// stopped and its delivered requests handed over (Stop does both); a
// request that still arrives is answered busy.
func (r *Runner) Close() {
	r.mu.Lock()
	already := r.closed
	r.closed = true
	r.mu.Unlock()
	r.wg.Wait()
	if !already {
		close(r.quit)
	}
}

// worker runs job, then whatever jobs it is handed, until the runner closes.
func (r *Runner) worker(job func()) {
	for {
		job()
		select {
		case job = <-r.jobs:
		case <-r.quit:
			return
		}
	}
}

// Go runs fn on an idle worker (or a new one, up to limit) once a slot is
// free, and reports false (running nothing) once the runner is closed. It
// blocks the caller (the endpoint's delivery goroutine) while all slots are
// busy, which is the back-pressure: pending requests then queue in the
// subscription, bounded by the endpoint's pending limits (see Spec).
func (r *Runner) Go(fn func(ctx context.Context)) bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	r.wg.Add(1)
	r.mu.Unlock()
	r.sem <- struct{}{}
	job := func() {
		defer func() { <-r.sem; r.wg.Done() }()
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		defer cancel()
		fn(ctx)
	}
	select {
	case r.jobs <- job: // an idle worker
		return true
	default:
	}
	if r.workers.Add(1) <= r.limit {
		go r.worker(job)
		return true
	}
	// Every worker there may be exists; this job holds a slot, so at most
	// limit-1 run: one is idle or about to be.
	r.workers.Add(-1)
	r.jobs <- job
	return true
}

// Then runs fn on a goroutine of its own that Close waits for but that
// holds no slot: the part of a handler that only waits for other services
// (which may need a slot of this runner to answer). Call it from a running
// handler only.
func (r *Runner) Then(fn func(ctx context.Context)) {
	r.wg.Add(1) // the calling handler's count is held: Close is still waiting
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		defer cancel()
		fn(ctx)
	}()
}

// Default pending limits of an endpoint subscription (see Spec).
const (
	DefaultPendingMsgs  = 4096    // requests queued per endpoint before drops
	DefaultPendingBytes = 8 << 20 // bytes queued per endpoint before drops
)

// Spec describes one endpoint of a micro service.
type Spec struct {
	Name    string // in $SRV.INFO and $SRV.STATS
	Subject string
	// Description is published as the endpoint's "description" metadata.
	Description string
	// Handler gets detached requests, safe to answer from any goroutine.
	Handler micro.Handler
	// PendingMsgs and PendingBytes bound the requests queued in the
	// endpoint's subscription; past them NATS drops requests and their
	// callers time out. Zero means DefaultPendingMsgs or
	// DefaultPendingBytes, -1 no limit.
	PendingMsgs, PendingBytes int
}

// Add adds the endpoints to svc in order, each handler getting detached
// requests (answered through nc, safe from any goroutine, JSON encoded by
// api.Marshal) and, with m not nil, each answer counted in m. On a
// *Service (AddService) the answers are also what its $SRV.STATS counts;
// micro's own service counts them wrong (see Service). It returns at the
// first endpoint it cannot add, leaving the ones before it added: the
// caller stops svc.
func Add(svc micro.Service, nc *nats.Conn, m *Metrics, specs ...Spec) error {
	own, _ := svc.(*Service)
	for _, s := range specs {
		msgs, bytes := s.PendingMsgs, s.PendingBytes
		if msgs == 0 {
			msgs = DefaultPendingMsgs
		}
		if bytes == 0 {
			bytes = DefaultPendingBytes
		}
		var err error
		if own != nil {
			err = own.add(s, msgs, bytes, m.endpoint(s.Name))
		} else {
			err = svc.AddEndpoint(s.Name, detach(nc, s.Handler, m.endpoint(s.Name)),
				micro.WithEndpointSubject(s.Subject),
				micro.WithEndpointMetadata(map[string]string{"description": s.Description}),
				micro.WithEndpointPendingLimits(msgs, bytes))
		}
		if err != nil {
			return fmt.Errorf("add endpoint %s: %w", s.Name, err)
		}
	}
	return nil
}

// StopTimeout bounds Stop's wait for the requests already delivered.
const StopTimeout = 10 * time.Second

// Stop stops svc, which makes micro drain the endpoint subscriptions, waits
// until every request delivered to nc before that has gone through its
// endpoint handler (AwaitDelivered), then closes the runners, which waits
// for the handlers they run: a request that reached this instance before
// Stop is answered, not refused. svc may be nil (a start that failed before
// adding it). Stop does not close nc.
func Stop(svc micro.Service, nc *nats.Conn, runners ...*Runner) error {
	var errs []error
	if svc != nil {
		if err := svc.Stop(); err != nil {
			errs = append(errs, err)
		}
		if err := AwaitDelivered(nc, StopTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range runners {
		r.Close()
	}
	return errors.Join(errs...)
}

// AwaitDelivered waits, at most timeout, until every message that reached
// nc before the call has gone through its subscription's handler. micro
// drains the endpoint subscriptions asynchronously: after its Stop returns,
// requests already received are still being handed to the handlers. A
// flush makes sure the server has processed the unsubscribes and everything
// it sent before is in the subscriptions' pending lists; a barrier then
// runs once every subscription has handled what is ahead of it. A closed
// connection delivers nothing more: nil.
func AwaitDelivered(nc *nats.Conn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := nc.FlushWithContext(ctx); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		return fmt.Errorf("flush: %w", err)
	}
	done := make(chan struct{})
	if err := nc.Barrier(func() { close(done) }); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		return fmt.Errorf("barrier: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for endpoint handlers: %w", ctx.Err())
	}
}

// JSON returns a micro handler that decodes the request into Req, runs fn on
// the runner and answers its result as JSON (or its error). Give it to
// Add, whose detached requests let the runner answer.
func JSON[Req, Resp any](r *Runner, name string, fn func(ctx context.Context, req *Req) (*Resp, error)) micro.Handler {
	return micro.HandlerFunc(func(m micro.Request) {
		var req Req
		if err := json.Unmarshal(m.Data(), &req); err != nil {
			RespondError(r.log, m, name, api.Errorf(api.CodeBadRequest, "malformed request: %v", err))
			return
		}
		started := r.Go(func(ctx context.Context) {
			resp, err := fn(ctx, &req)
			if err != nil {
				RespondError(r.log, m, name, err)
				return
			}
			Respond(r.log, m, name, resp)
		})
		if !started {
			RespondError(r.log, m, name, api.Errorf(api.CodeBusy, "service instance stopping"))
		}
	})
}

// Respond answers m with v as JSON. An answer that cannot be sent (larger
// than the server's payload limit, say) is answered as an internal error, so
// the caller hears something instead of timing out.
func Respond(log *slog.Logger, m micro.Request, name string, v any) {
	if err := m.RespondJSON(v); err != nil {
		RespondError(log, m, name, fmt.Errorf("respond: %w", err))
	}
}

// RespondError answers m with ErrorFor(err), logging err unless it is an
// *api.Error already.
func RespondError(log *slog.Logger, m micro.Request, name string, err error) {
	ae := ErrorFor(err)
	var own *api.Error
	switch {
	case errors.As(err, &own):
	case ae == api.ErrDatabaseUnavailable:
		log.Warn("request failed: database unavailable", "endpoint", name, "err", err)
	case ae == api.ErrStorageFull:
		log.Warn("request failed: storage full", "endpoint", name, "err", err)
	default:
		log.Error("request failed", "endpoint", name, "err", err)
	}
	code, description := ae.Header()
	if rerr := m.Error(code, description, nil); rerr != nil {
		log.Warn("respond", "endpoint", name, "err", rerr)
	}
}

// ErrorFor is the answer to a request that failed with err: an *api.Error
// keeps its code and message; a database that cannot be reached is
// api.ErrDatabaseUnavailable (the caller retries, a client with the same
// cid), and one that is full api.ErrStorageFull (likewise); anything else
// is api.ErrInternal.
func ErrorFor(err error) *api.Error {
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		return ae
	case sqldb.IsUnavailable(err):
		return api.ErrDatabaseUnavailable
	case sqldb.IsFull(err):
		return api.ErrStorageFull
	}
	return api.ErrInternal
}

// detach wraps h so that it receives requests that answer by publishing
// to the reply subject through nc themselves, safe from any goroutine,
// each request's first answer counted in obs (nil: not counted). The
// price, on micro's own service: its stats do not count the errors
// answered this way, nor the time to the answer (a Service's do, see Add).
func detach(nc *nats.Conn, h micro.Handler, obs *observer) micro.Handler {
	if obs == nil {
		return micro.HandlerFunc(func(m micro.Request) { h.Handle(&detached{Request: m, nc: nc}) })
	}
	return micro.HandlerFunc(func(m micro.Request) {
		h.Handle(&detached{Request: m, nc: nc, obs: obs, start: time.Now()})
	})
}

type detached struct {
	micro.Request
	nc *nats.Conn

	obs      *observer        // nil: not counted in Metrics
	stats    *serviceEndpoint // nil: not counted in a Service's STATS
	start    time.Time
	answered atomic.Bool // the first answer sent is the one counted
}

func (d *detached) Respond(data []byte, opts ...micro.RespondOpt) error {
	return d.publish(&nats.Msg{Data: data}, opts, "", "")
}

func (d *detached) RespondJSON(v any, opts ...micro.RespondOpt) error {
	data, err := api.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %w", micro.ErrMarshalResponse, err)
	}
	return d.Respond(data, opts...)
}

func (d *detached) Error(code, description string, data []byte, opts ...micro.RespondOpt) error {
	if code == "" || description == "" {
		return fmt.Errorf("%w: error code and description", micro.ErrArgRequired)
	}
	return d.publish(&nats.Msg{
		Header: nats.Header{
			micro.ErrorHeader:     []string{description},
			micro.ErrorCodeHeader: []string{code},
		},
		Data: data,
	}, opts, code, description)
}

// publish sends msg as the answer and, the first time one is sent, counts
// it: an error answer when code is not "".
func (d *detached) publish(msg *nats.Msg, opts []micro.RespondOpt, code, description string) error {
	for _, opt := range opts {
		opt(msg)
	}
	msg.Subject = d.Reply()
	if msg.Subject == "" {
		return nats.ErrMsgNoReply
	}
	if err := d.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("%w: %w", micro.ErrRespond, err)
	}
	if (d.obs == nil && d.stats == nil) || !d.answered.CompareAndSwap(false, true) {
		return nil
	}
	took := time.Since(d.start)
	if d.stats != nil {
		d.stats.record(code, description, took)
	}
	if d.obs != nil {
		result := resultOK
		if code != "" {
			// The metrics' result is the code's word (bounded: the
			// api.Code values).
			result = string(api.ErrorFromHeader(nats.Header{
				micro.ErrorCodeHeader: {code}, micro.ErrorHeader: {description}}).Code)
		}
		d.obs.answered(result, took)
	}
	return nil
}
