// Command natter-offline runs natter's offline service: the durable
// per-user inbox that stores every chat message before its sender is
// answered and keeps it until the recipient acknowledges it.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/services/offline"
	"github.com/natter-chat/natter/shared/buildinfo"
	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/shared/natsconn"
	"github.com/natter-chat/natter/shared/sqldb"
)

// shutdownTimeout bounds the NATS drain at exit.
const shutdownTimeout = 10 * time.Second

// config is everything run needs, parsed once from the flags.
type config struct {
	natsURL string
	dbConns int
	openDB  func(context.Context) (*sqldb.DB, error)
	svc     offline.Config
	log     *slog.Logger
}

func main() {
	app := &cli.App{
		Name:    "natter-offline",
		Usage:   "natter's durable per-user inbox service",
		Version: buildinfo.Version(),
		Flags:   flags(),
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
		fmt.Fprintln(os.Stderr, "natter-offline:", err)
		os.Exit(1)
	}
}

// flags are the command-line flags, each with its NATTER_ environment
// variable.
func flags() []cli.Flag {
	return append(append(append([]cli.Flag{cliflag.NATSFlag()},
		cliflag.DBFlags("natter-data/natter.db")...),
		cliflag.LogFlags()...),
		&cli.DurationFlag{Name: "retention", Value: offline.DefaultRetention, EnvVars: []string{"NATTER_RETENTION"},
			Usage: "keep acknowledged messages this long (unacknowledged ones are kept whatever their age)"},
		&cli.DurationFlag{Name: "prune-every", Value: offline.DefaultPruneEvery, EnvVars: []string{"NATTER_PRUNE_EVERY"},
			Usage: "interval between prunes of acknowledged messages"},
		&cli.IntFlag{Name: "batch-size", Value: offline.DefaultBatchSize, EnvVars: []string{"NATTER_BATCH_SIZE"},
			Usage: "most store requests written in one transaction"},
		&cli.IntFlag{Name: "queue-limit", Value: offline.DefaultQueueLimit, EnvVars: []string{"NATTER_QUEUE_LIMIT"},
			Usage: "most store requests waiting for a writer; past it stores are answered busy"},
		&cli.IntFlag{Name: "writers", Value: offline.DefaultWriters, EnvVars: []string{"NATTER_WRITERS"},
			Usage: "number of batch writers"},
		&cli.IntFlag{Name: "max-recipients", Value: offline.DefaultMaxRecipients, EnvVars: []string{"NATTER_MAX_RECIPIENTS"},
			Usage: "most recipients of one message"},
		&cli.DurationFlag{Name: "request-timeout", Value: offline.DefaultRequestTimeout, EnvVars: []string{"NATTER_REQUEST_TIMEOUT"},
			Usage: "bound on the database work of one request or store batch"},
	)
}

// parse turns the flags into a validated config.
func parse(c *cli.Context) (config, error) {
	log, err := cliflag.Logger(c)
	if err != nil {
		return config{}, err
	}
	cfg := config{
		natsURL: c.String(cliflag.NATS),
		dbConns: c.Int(cliflag.DBConns),
		openDB:  func(ctx context.Context) (*sqldb.DB, error) { return cliflag.OpenDB(ctx, c) },
		svc: offline.Config{
			Retention:      c.Duration("retention"),
			PruneEvery:     c.Duration("prune-every"),
			BatchSize:      c.Int("batch-size"),
			QueueLimit:     c.Int("queue-limit"),
			Writers:        c.Int("writers"),
			MaxRecipients:  c.Int("max-recipients"),
			RequestTimeout: c.Duration("request-timeout"),
		},
		log: log,
	}
	if err := cfg.svc.Validate(); err != nil {
		return config{}, fmt.Errorf("invalid flags: %w", err)
	}
	return cfg, nil
}

// run serves until ctx is cancelled, then shuts down in order: the service
// (answering what it has received), the NATS connection, the database.
func run(ctx context.Context, cfg config) error {
	log := cfg.log
	db, err := cfg.openDB(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	cfg.svc.Concurrency = cliflag.Concurrency(db, cfg.dbConns)

	closed := make(chan struct{})
	nc, err := natsconn.Connect(cfg.natsURL, "natter-offline", log,
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		return err
	}
	defer nc.Close()

	svc, err := offline.Start(ctx, nc, db, cfg.svc, log)
	if err != nil {
		return err
	}
	log.Info("natter-offline running", "version", buildinfo.Version(), "db", db.Dialect.String())
	<-ctx.Done()
	log.Info("shutting down")

	if err := svc.Stop(); err != nil {
		log.Error("stop offline service", "err", err)
	}
	if err := nc.Drain(); err != nil {
		log.Error("drain nats", "err", err)
		return nil
	}
	select {
	case <-closed:
	case <-time.After(shutdownTimeout):
		log.Warn("nats drain timed out")
	}
	return nil
}
