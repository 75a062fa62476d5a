package endpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natter-chat/natter/shared/buildinfo"
)

// StartFlushTimeout bounds Start's wait for the server to confirm the
// subscriptions.
const StartFlushTimeout = 5 * time.Second

// InstanceConfig describes the micro service of an Instance and the parts
// of the service that its Stop stops around the endpoints.
type InstanceConfig struct {
	// Name is the service's name in $SRV.INFO and the queue group of its
	// endpoints (subject.UserService, ...); logs and errors say "<Name>
	// service".
	Name        string
	Description string
	// StatsHandler is the data of an endpoint in $SRV.STATS (nil: none).
	StatsHandler micro.StatsHandler
	Log          *slog.Logger
	// Metrics counts the endpoints' answers (nil: not counted).
	Metrics *Metrics
	// Runners run the endpoints' handlers. Stop closes them once the
	// requests delivered before it have reached their handlers.
	Runners []*Runner
	// LogAttrs are logged with "<Name> service started", after service_id.
	LogAttrs []any

	// Subscribe, if set, makes the service's own subscriptions (not
	// endpoints) once the endpoints are added; Start's flush confirms them
	// too. Its failure fails Start.
	Subscribe func() error
	// BeforeStop, if set, runs first in Stop, before the endpoints stop:
	// the service stops taking its other input (a subscription of its
	// own) and finishes what that input started.
	BeforeStop func() error
	// Delivered, if set, runs in Stop once every request delivered before
	// it has reached its endpoint handler, before the runners close:
	// handlers that hand requests to workers of the service's own (batch
	// writers) have them finished here.
	Delivered func()
	// AfterStop, if set, runs last in Stop, once no handler runs any more:
	// what the handlers used (a requester, a batcher, a background loop)
	// stops here.
	AfterStop func()
}

// Instance is a running service: the start and stop every natter service
// shares. Start adds its micro service (AddService) and endpoints (Add)
// and waits for the server to confirm them; Stop stops them in the one
// order every service keeps: its other input first (BeforeStop), then the
// endpoints, answering every request delivered before (Stop), then its
// workers (Delivered), the runners and what the handlers used (AfterStop).
// The caller owns the NATS connection and the database and closes them
// after Stop.
type Instance struct {
	cfg InstanceConfig
	nc  *nats.Conn
	svc *Service

	stopOnce sync.Once
	stopErr  error
}

// Start starts the micro service cfg describes on nc with the endpoints
// specs, then cfg.Subscribe, and flushes (bounded by ctx and
// StartFlushTimeout), so that the endpoints answer once it returns; a
// connection that cannot flush (NATS away) sends the subscriptions once it
// is back, which is logged, not an error. If any step fails, Start stops
// what it started (Stop, every hook included) and returns the error.
func Start(ctx context.Context, nc *nats.Conn, cfg InstanceConfig, specs ...Spec) (*Instance, error) {
	in := &Instance{cfg: cfg, nc: nc}
	if err := in.start(specs); err != nil {
		in.Stop()
		return nil, err
	}
	fctx, cancel := context.WithTimeout(ctx, StartFlushTimeout)
	defer cancel()
	if err := nc.FlushWithContext(fctx); err != nil {
		cfg.Log.Warn(cfg.Name+" service: subscriptions not confirmed by the server", "err", err)
	}
	cfg.Log.Info(cfg.Name+" service started", append([]any{"service_id", in.svc.Info().ID}, cfg.LogAttrs...)...)
	return in, nil
}

func (in *Instance) start(specs []Spec) error {
	svc, err := AddService(in.nc, micro.Config{
		Name:         in.cfg.Name,
		Version:      buildinfo.Release,
		Description:  in.cfg.Description,
		QueueGroup:   in.cfg.Name,
		StatsHandler: in.cfg.StatsHandler,
		ErrorHandler: func(_ micro.Service, e *micro.NATSError) {
			in.cfg.Log.Error(in.cfg.Name+" service nats error", "subject", e.Subject, "err", e.Description)
		},
	})
	if err != nil {
		return fmt.Errorf("add micro service: %w", err)
	}
	in.svc = svc
	if err := Add(svc, in.nc, in.cfg.Metrics, specs...); err != nil {
		return err
	}
	if in.cfg.Subscribe != nil {
		return in.cfg.Subscribe()
	}
	return nil
}

// Service is the instance's micro service.
func (in *Instance) Service() *Service { return in.svc }

// Stop runs BeforeStop, stops the endpoints and waits for the requests
// delivered before (Stop), runs Delivered, closes the runners (waiting for
// their handlers) and runs AfterStop. It does not close the NATS
// connection. The few requests still being drained once Stop stops
// waiting for them are answered api.ErrBusy. Calling Stop again returns
// the first call's result.
func (in *Instance) Stop() error {
	in.stopOnce.Do(func() { in.stopErr = in.stop() })
	return in.stopErr
}

func (in *Instance) stop() error {
	var errs []error
	if in.cfg.BeforeStop != nil {
		if err := in.cfg.BeforeStop(); err != nil {
			errs = append(errs, err)
		}
	}
	var svc micro.Service
	if in.svc != nil {
		svc = in.svc
	}
	if err := Stop(svc, in.nc); err != nil {
		errs = append(errs, err)
	}
	if in.cfg.Delivered != nil {
		in.cfg.Delivered()
	}
	for _, r := range in.cfg.Runners {
		r.Close()
	}
	if in.cfg.AfterStop != nil {
		in.cfg.AfterStop()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop %s service: %w", in.cfg.Name, err)
	}
	in.cfg.Log.Info(in.cfg.Name + " service stopped")
	return nil
}
