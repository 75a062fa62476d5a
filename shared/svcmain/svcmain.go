// Package svcmain is the life cycle every natter service binary shares: the
// common flags, then open the database the flags select, connect to NATS,
// start the service, serve until SIGINT or SIGTERM, and stop in order - the
// service first (it answers what it accepted), then the NATS connection
// (drained), then the database.
package svcmain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/buildinfo"
	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/shared/natsconn"
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

// StartFunc starts a service on an open database and NATS connection.
// concurrency is how many requests it should handle at once for that
// database.
type StartFunc func(ctx context.Context, nc *nats.Conn, db *sqldb.DB, concurrency int, log *slog.Logger) (Service, error)

// Flags returns the common flags (NATS, database, logging, request timeout)
// followed by the service's own.
func Flags(own ...cli.Flag) []cli.Flag {
	flags := []cli.Flag{cliflag.NATSFlag(), &cli.DurationFlag{Name: cliflag.RequestTimeout, Value: 5 * time.Second,
		EnvVars: []string{"NATTER_REQUEST_TIMEOUT"}, Usage: "longest time one request may take, database work included"}}
	flags = append(flags, cliflag.DBFlags("natter-data/natter.db")...)
	flags = append(flags, cliflag.LogFlags()...)
	return append(flags, own...)
}

// Main runs app and exits non-zero on error.
func Main(app *cli.App) {
	app.Version = buildinfo.Version()
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, err)
		os.Exit(1)
	}
}

// Run serves the service that start starts, as NATS client name, until
// SIGINT or SIGTERM.
func Run(c *cli.Context, name string, start StartFunc) error {
	log, err := cliflag.Logger(c)
	if err != nil {
		return err
	}
	stopPprof, err := cliflag.StartPprof(c, log)
	if err != nil {
		return err
	}
	defer stopPprof()
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, c, name, log, start)
}

func run(ctx context.Context, c *cli.Context, name string, log *slog.Logger, start StartFunc) error {
	startCtx, cancelStart := context.WithTimeout(ctx, startTimeout)
	defer cancelStart()
	db, err := cliflag.OpenDB(startCtx, c)
	if err != nil {
		return err
	}
	defer db.Close()

	closed := make(chan struct{})
	nc, err := natsconn.Connect(c.String(cliflag.NATS), name, log,
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		return err
	}
	defer nc.Close()

	svc, err := start(startCtx, nc, db, cliflag.Concurrency(db, c.Int(cliflag.DBConns)), log)
	if err != nil {
		return err
	}
	cancelStart()
	log.Info(name+" running", "version", buildinfo.Version(), "db", db.Dialect.String())
	<-ctx.Done()
	log.Info("shutting down")

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
