// Command natter-user runs natter's user service: accounts, logins and the
// gateways' presence leases, served on NATS (natter.svc.user.*).
package main

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
	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/services/user"
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

// config is everything run needs, parsed from the flags.
type config struct {
	natsURL string
	// openDB opens the database the flags select.
	openDB  func(context.Context) (*sqldb.DB, error)
	service user.Config
	log     *slog.Logger
}

func main() {
	app := &cli.App{
		Name:    "natter-user",
		Usage:   "natter user service: accounts, logins and gateway presence leases over NATS",
		Version: buildinfo.Version(),
		Flags: append(append(append([]cli.Flag{cliflag.NATSFlag()},
			cliflag.DBFlags("natter-data/natter.db")...),
			cliflag.LogFlags()...),
			&cli.IntFlag{Name: "bcrypt-cost", Value: 10, EnvVars: []string{"NATTER_BCRYPT_COST"},
				Usage: fmt.Sprintf("bcrypt cost of new password hashes (%d-%d); each step doubles the CPU a register or login spends",
					bcrypt.MinCost, bcrypt.MaxCost)},
			&cli.StringFlag{Name: "login-policy", Value: user.PolicyKick, EnvVars: []string{"NATTER_LOGIN_POLICY"},
				Usage: "what a login does while the user is online elsewhere: kick (replace the other session) or reject (refuse the login)"},
			&cli.DurationFlag{Name: "request-timeout", Value: 5 * time.Second, EnvVars: []string{"NATTER_REQUEST_TIMEOUT"},
				Usage: "longest time one request may take, database work included"},
		),
		Action: func(c *cli.Context) error {
			cfg, err := parse(c)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, cfg)
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "natter-user:", err)
		os.Exit(1)
	}
}

// parse turns the flags into a validated config.
func parse(c *cli.Context) (config, error) {
	log, err := cliflag.Logger(c)
	if err != nil {
		return config{}, err
	}
	cfg := config{
		natsURL: c.String(cliflag.NATS),
		openDB:  func(ctx context.Context) (*sqldb.DB, error) { return cliflag.OpenDB(ctx, c) },
		service: user.Config{
			BcryptCost:  c.Int("bcrypt-cost"),
			LoginPolicy: c.String("login-policy"),
			// The pool size; run lowers it for SQLite's single writer.
			Concurrency:    c.Int(cliflag.DBConns),
			RequestTimeout: c.Duration("request-timeout"),
		},
		log: log,
	}
	if err := cfg.service.Validate(); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// run serves until ctx is cancelled, then shuts down in order: service
// (drains requests), NATS connection, database.
func run(ctx context.Context, cfg config) error {
	log := cfg.log
	startCtx, cancelStart := context.WithTimeout(ctx, startTimeout)
	defer cancelStart()
	db, err := cfg.openDB(startCtx)
	if err != nil {
		return err
	}
	defer db.Close()
	cfg.service.Concurrency = cliflag.Concurrency(db, cfg.service.Concurrency)

	closed := make(chan struct{})
	nc, err := natsconn.Connect(cfg.natsURL, "natter-user", log,
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		return err
	}
	defer nc.Close()

	svc, err := user.Start(startCtx, nc, db, cfg.service, log)
	if err != nil {
		return err
	}
	cancelStart()
	<-ctx.Done()
	log.Info("shutting down")

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	var errs []error
	if err := svc.Stop(); err != nil {
		errs = append(errs, err)
	}
	if err := nc.Drain(); err != nil {
		errs = append(errs, fmt.Errorf("drain nats: %w", err))
	} else {
		select {
		case <-closed:
		case <-sctx.Done():
			errs = append(errs, fmt.Errorf("drain nats: %w", sctx.Err()))
		}
	}
	if err := db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close database: %w", err))
	}
	log.Info("stopped")
	return errors.Join(errs...)
}
