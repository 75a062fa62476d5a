package offline

import (
	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/cliflag"
)

// Flags are the offline service's own flags; natter-offline and natter
// serve share them.
func Flags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "retention", Value: DefaultRetention, EnvVars: []string{"NATTER_RETENTION"},
			Usage: "keep acknowledged messages this long (unacknowledged ones are kept whatever their age)"},
		&cli.DurationFlag{Name: "prune-every", Value: DefaultPruneEvery, EnvVars: []string{"NATTER_PRUNE_EVERY"},
			Usage: "interval between prunes of acknowledged messages"},
		&cli.IntFlag{Name: "batch-size", Value: DefaultBatchSize, EnvVars: []string{"NATTER_BATCH_SIZE"},
			Usage: "most store requests written in one transaction"},
		&cli.IntFlag{Name: "queue-limit", Value: DefaultQueueLimit, EnvVars: []string{"NATTER_QUEUE_LIMIT"},
			Usage: "most store requests waiting for a writer; past it stores are answered busy"},
		&cli.IntFlag{Name: "writers", EnvVars: []string{"NATTER_WRITERS"},
			Usage: "number of batch writers, each committing its share of the inboxes (0: 1 on SQLite, 4 on MySQL)"},
		&cli.IntFlag{Name: "max-recipients", Value: DefaultMaxRecipients, EnvVars: []string{"NATTER_MAX_RECIPIENTS"},
			Usage: "most recipients of one message"},
	}
}

// ConfigFromFlags reads Flags (and --request-timeout) into a Config.
func ConfigFromFlags(c *cli.Context) Config {
	return Config{
		Retention:      c.Duration("retention"),
		PruneEvery:     c.Duration("prune-every"),
		BatchSize:      c.Int("batch-size"),
		QueueLimit:     c.Int("queue-limit"),
		Writers:        c.Int("writers"),
		MaxRecipients:  c.Int("max-recipients"),
		RequestTimeout: c.Duration(cliflag.RequestTimeout),
	}
}
