// Package svcmain is the life cycle every natter service binary shares: the
// common flags, then serve the operational endpoints (--http), open the
// database the flags select, connect to NATS, start the service, serve until
// SIGINT or SIGTERM, and stop in order - readiness off first, then the
// service (it answers what it accepted), then the NATS connection
// (drained), then the database, and the operational endpoints last.
package svcmain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/backoff"
	"github.com/natter-chat/natter/shared/buildinfo"
	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/shared/dbflag"
	"github.com/natter-chat/natter/shared/natsconn"
	"github.com/natter-chat/natter/shared/ops"
	"github.com/natter-chat/natter/shared/sqldb"
)

const (
	// startTimeout bounds opening the database, migrating it (which may wait
	// for another instance's migration) and registering the service.
	startTimeout    = 2 * time.Minute
	shutdownTimeout = 10 * time.Second
)

// Service is a running service.
type Service interface{ Stop() error }

// Env is what a service starts on. The service owns none of it: svcmain
// closes the connection and the database after the service's Stop.
type Env struct {
	NC *nats.Conn
	DB *sqldb.DB
	// Concurrency is how many requests the service should handle at once
	// for DB.
	Concurrency int
	// Registerer is where the service registers its metrics (served on
	// /metrics with --http).
	Registerer prometheus.Registerer
	// Ops is the process's operational endpoints, for readiness checks of
	// the service's own.
	Ops *ops.Server
	Log *slog.Logger
}

// StartFunc starts a service.
type StartFunc func(ctx context.Context, env Env) (Service, error)

// Flags returns the common flags (NATS and its credentials, database,
// logging and --http, request timeout, --print-config) followed by the
// service's own.
func Flags(own ...cli.Flag) []cli.Flag {
	flags := cliflag.NATSFlags()
	flags = append(flags, &cli.DurationFlag{Name: cliflag.RequestTimeout, Value: 5 * time.Second,
		EnvVars: []string{"NATTER_REQUEST_TIMEOUT"}, Usage: "longest time one request may take, database work included"})
	flags = append(flags, dbflag.Flags("natter-data/natter.db")...)
	flags = append(flags, cliflag.LogFlags()...)
	flags = append(flags, cliflag.PrintConfigFlag())
	return append(flags, own...)
}

// Main runs app and exits non-zero on error. It sets the app's version
// (--version) and runs --print-config before the app's Action.
func Main(app *cli.App) {
	app.Version = buildinfo.Version()
	if action := app.Action; action != nil {
		app.Action = func(c *cli.Context) error {
			if done, err := cliflag.HandlePrintConfig(c); done {
				return err
			}
			return action(c)
		}
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, err)
		os.Exit(1)
	}
}

// Run serves the service that start starts, as NATS client name
// (natter-<service>), until SIGINT or SIGTERM.
func Run(c *cli.Context, name string, start StartFunc) error {
	ctx, proc, err := cliflag.StartProcess(c)
	if err != nil {
		return err
	}
	defer proc.Stop()
	return run(ctx, c, name, proc.Log(), start)
}

func run(ctx context.Context, c *cli.Context, name string, log *slog.Logger, start StartFunc) (err error) {
	natsOpts, err := cliflag.NATSOptions(c)
	if err != nil {
		return err
	}
	o, err := cliflag.StartOps(c, log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, o.Shutdown(ctx, shutdownTimeout)) }()
	started := o.Starting("service")
	service := strings.TrimPrefix(name, "natter-") // the service label of the metrics

	startCtx, cancelStart := context.WithTimeout(ctx, startTimeout)
	defer cancelStart()
	db, err := openDB(startCtx, c, log)
	if err != nil {
		return err
	}
	defer db.Close()
	o.AddCheck("database", db.Alive)

	nm, err := natsconn.NewMetrics(o.Registry(), service)
	if err != nil {
		return err
	}
	closed := make(chan struct{})
	nc, err := natsconn.ConnectRetry(startCtx, c.String(cliflag.NATS), name, log, append(natsOpts,
		natsconn.Observe(nm), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))...)
	if err != nil {
		return err
	}
	defer nc.Close()
	o.AddCheck("nats", natsconn.Ready(nc))

	svc, err := start(startCtx, Env{
		NC:          nc,
		DB:          db,
		Concurrency: dbflag.Concurrency(db, c.Int(cliflag.DBConns)),
		Registerer:  o.Registry(),
		Ops:         o,
		Log:         log,
	})
	if err != nil {
		return err
	}
	cancelStart()
	started()
	log.Info(name+" running", "version", buildinfo.Version(), "db", db.Dialect.String())
	<-ctx.Done()
	log.Info("shutting down")
	o.SetDraining()

	var errs []error
	if err := svc.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("stop: %w", err))
	}
	if err := nc.Drain(); err != nil {
		errs = append(errs, fmt.Errorf("drain nats: %w", err))
	} else {
		select {
		case <-closed:
		case <-time.After(shutdownTimeout):
			errs = append(errs, errors.New("drain nats: timed out"))
		}
	}
	if err := db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close database: %w", err))
	}
	log.Info("stopped")
	return errors.Join(errs...)
}

// openDB opens the database the flags select, trying again with growing
// pauses while it cannot be reached (MySQL still starting, say) until ctx
// ends; a refused login or a bad DSN fails at once.
func openDB(ctx context.Context, c *cli.Context, log *slog.Logger) (*sqldb.DB, error) {
	b := backoff.New(250*time.Millisecond, 5*time.Second)
	for {
		db, err := dbflag.Open(ctx, c)
		if err == nil || !sqldb.IsUnavailable(err) || ctx.Err() != nil {
			return db, err
		}
		pause := b.Next()
		log.Warn("database not reachable yet; retrying", "retry_in", pause, "err", err)
		if !backoff.Sleep(ctx, pause) {
			return nil, err
		}
	}
}
