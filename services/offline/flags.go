package offline

import (
	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/cliflag"
)

// Flag names of the offline service that its Config.Validate names.
const (
	flagRetention     = "retention"
	flagPruneEvery    = "prune-every"
	flagBatchSize     = "batch-size"
	flagQueueLimit    = "queue-limit"
	flagWriters       = "writers"
	flagMaxRecipients = "max-recipients"
	flagSenderBurst   = "sender-burst"
)

// Flags are the offline service's own flags; natter-offline and natter
// serve share them.
func Flags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: flagRetention, Value: DefaultRetention, EnvVars: []string{"NATTER_RETENTION"},
			Usage: "keep acknowledged messages this long (unacknowledged ones are kept whatever their age)"},
		&cli.DurationFlag{Name: flagPruneEvery, Value: DefaultPruneEvery, EnvVars: []string{"NATTER_PRUNE_EVERY"},
			Usage: "interval between prunes of acknowledged messages"},
		&cli.IntFlag{Name: flagBatchSize, Value: DefaultBatchSize, EnvVars: []string{"NATTER_BATCH_SIZE"},
			Usage: "most store requests written in one transaction"},
		&cli.IntFlag{Name: flagQueueLimit, Value: DefaultQueueLimit, EnvVars: []string{"NATTER_QUEUE_LIMIT"},
			Usage: "most store requests waiting for a writer; past it stores are answered busy"},
		&cli.IntFlag{Name: flagWriters, EnvVars: []string{"NATTER_WRITERS"},
			Usage: "number of batch writers, each committing its share of the inboxes (0: 1 on SQLite, 4 on MySQL)"},
		&cli.IntFlag{Name: flagMaxRecipients, Value: DefaultMaxRecipients, EnvVars: []string{"NATTER_MAX_RECIPIENTS"},
			Usage: "most recipients of one message"},
		&cli.Int64Flag{Name: "inbox-max-messages", Value: DefaultInboxMaxMessages, EnvVars: []string{"NATTER_INBOX_MAX_MESSAGES"},
			Usage: "most unacknowledged messages one inbox holds; a store past it is refused for that recipient (-1: no limit)"},
		&cli.Int64Flag{Name: "inbox-max-bytes", Value: DefaultInboxMaxBytes, EnvVars: []string{"NATTER_INBOX_MAX_BYTES"},
			Usage: "most bytes of unacknowledged message bodies one inbox holds (-1: no limit)"},
		&cli.Int64Flag{Name: "sender-rate", Value: DefaultSenderRate, EnvVars: []string{"NATTER_SENDER_RATE"},
			Usage: "bytes of message bodies each sender may store per second, per offline instance (-1: no limit)"},
		&cli.Int64Flag{Name: flagSenderBurst, Value: DefaultSenderBurst, EnvVars: []string{"NATTER_SENDER_BURST"},
			Usage: "bytes a sender may store at once above --sender-rate (at least 65536)"},
		&cli.Int64Flag{Name: "store-min-free", Value: DefaultStoreMinFree, EnvVars: []string{"NATTER_STORE_MIN_FREE"},
			Usage: "SQLite: bytes stores leave free on the database's filesystem for logins and acks; below it stores answer retry later (-1: none)"},
	}
}

// ConfigFromFlags reads Flags (and --request-timeout) into a Config.
func ConfigFromFlags(c *cli.Context) Config {
	return Config{
		Retention:        c.Duration(flagRetention),
		PruneEvery:       c.Duration(flagPruneEvery),
		BatchSize:        c.Int(flagBatchSize),
		QueueLimit:       c.Int(flagQueueLimit),
		Writers:          c.Int(flagWriters),
		MaxRecipients:    c.Int(flagMaxRecipients),
		InboxMaxMessages: c.Int64("inbox-max-messages"),
		InboxMaxBytes:    c.Int64("inbox-max-bytes"),
		SenderRate:       c.Int64("sender-rate"),
		SenderBurst:      c.Int64(flagSenderBurst),
		StoreMinFree:     c.Int64("store-min-free"),
		RequestTimeout:   c.Duration(cliflag.RequestTimeout),
	}
}
