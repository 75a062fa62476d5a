package offline

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/shared/sqldb"
)

// Defaults for the zero fields of Config.
const (
	DefaultRetention  = 24 * time.Hour
	DefaultPruneEvery = time.Minute
	DefaultBatchSize  = 256
	DefaultQueueLimit = 8192
	// DefaultWriters is the number of batch writers on SQLite, which has
	// one writer connection; DefaultWritersMySQL on MySQL, where writers
	// commit in parallel.
	DefaultWriters        = 1
	DefaultWritersMySQL   = 4
	DefaultConcurrency    = 4
	DefaultRequestTimeout = 5 * time.Second
	DefaultMaxRecipients  = 5000
	// DefaultInboxMaxMessages and DefaultInboxMaxBytes bound what one
	// inbox holds unacknowledged.
	DefaultInboxMaxMessages = 10000
	DefaultInboxMaxBytes    = 64 << 20
	// DefaultSenderRate and DefaultSenderBurst are each sender's byte rate
	// of message bodies stored (per instance), and the burst it may send
	// at once.
	DefaultSenderRate  = 1 << 20
	DefaultSenderBurst = 16 << 20
	// DefaultStoreMinFree is the space stores leave free on an SQLite
	// database's filesystem, for logins, acks and whatever else writes
	// there.
	DefaultStoreMinFree = 256 << 20
)

// Limits on requests and configuration.
const (
	// DefaultFetchLimit is the page size of a fetch that asks for none.
	DefaultFetchLimit = 100
	// MaxFetchLimit is the largest page a fetch returns.
	MaxFetchLimit = 1000
	// MaxAcks is the most inboxes one ack request may name.
	MaxAcks = 10000

	maxWriters       = 64
	maxBatchSize     = 10000
	maxMaxRecipients = 100000
)

// Config tunes the offline service. Zero fields take the Default values.
type Config struct {
	// Retention is how long acknowledged entries are kept; unacknowledged
	// ones are kept whatever their age.
	Retention time.Duration
	// PruneEvery is the interval between prunes.
	PruneEvery time.Duration
	// BatchSize is the most store requests written in one transaction.
	BatchSize int
	// QueueLimit is the most store requests waiting for a writer; past it
	// stores are answered busy.
	QueueLimit int
	// Writers is the number of batch writers (0: DefaultWriters on
	// SQLite, DefaultWritersMySQL on MySQL). Each takes its share of the
	// requests: one-to-one messages by recipient, group messages by
	// sender, so each keeps the order they came in.
	Writers int
	// Concurrency bounds the fetch and ack handlers running at once (size it
	// like the database pool).
	Concurrency int
	// RequestTimeout bounds the database work of one request or batch.
	RequestTimeout time.Duration
	// MaxRecipients is the most recipients of one message.
	MaxRecipients int
	// InboxMaxMessages and InboxMaxBytes bound what one inbox holds
	// unacknowledged (bytes: of message bodies); a store that would pass
	// either is refused for that recipient (api.ErrInboxFull). Negative:
	// no limit.
	InboxMaxMessages int64
	InboxMaxBytes    int64
	// SenderRate is each sender's rate of message body bytes stored, per
	// second, with bursts of SenderBurst; a store past it is refused
	// (api.ErrSendRate). Per instance. Negative: no limit.
	SenderRate  int64
	SenderBurst int64
	// StoreMinFree is the space (bytes) stores leave free on an SQLite
	// database's filesystem: with less, stores are refused
	// (api.ErrStorageFull, retry later) while fetches, acks and the other
	// services' writes (logins) go on in what is left. Negative: no
	// reserve (stores are refused only once the disk is full).
	StoreMinFree int64
	// Registerer is where the service registers its metrics (natter_*,
	// service="offline"); nil: they are counted but not registered
	// anywhere.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults (on SQLite), spelled out.
func DefaultConfig() Config { return Config{}.withDefaults(sqldb.SQLite) }

// withDefaults returns c with its zero fields set to the defaults for a
// database of dialect d.
func (c Config) withDefaults(d sqldb.Dialect) Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defDur(&c.Retention, DefaultRetention)
	defDur(&c.PruneEvery, DefaultPruneEvery)
	def(&c.BatchSize, DefaultBatchSize)
	def(&c.QueueLimit, DefaultQueueLimit)
	if d == sqldb.MySQL {
		def(&c.Writers, DefaultWritersMySQL)
	}
	def(&c.Writers, DefaultWriters)
	def(&c.Concurrency, DefaultConcurrency)
	defDur(&c.RequestTimeout, DefaultRequestTimeout)
	def(&c.MaxRecipients, DefaultMaxRecipients)
	def64 := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	def64(&c.InboxMaxMessages, DefaultInboxMaxMessages)
	def64(&c.InboxMaxBytes, DefaultInboxMaxBytes)
	def64(&c.SenderRate, DefaultSenderRate)
	def64(&c.SenderBurst, DefaultSenderBurst)
	def64(&c.StoreMinFree, DefaultStoreMinFree)
	return c
}

// Validate reports every field that is out of range, each naming its flag.
// Zero means the default and is always valid.
func (c Config) Validate() error {
	var errs []error
	nonNeg := func(flag string, v time.Duration) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("--%s %v: want 0 (the default) or more", flag, v))
		}
	}
	inRange := func(flag string, v, hi int) {
		if v < 0 || v > hi {
			errs = append(errs, fmt.Errorf("--%s %d: want 1-%d (0 for the default)", flag, v, hi))
		}
	}
	nonNeg(flagRetention, c.Retention)
	nonNeg(flagPruneEvery, c.PruneEvery)
	nonNeg(cliflag.RequestTimeout, c.RequestTimeout)
	inRange(flagBatchSize, c.BatchSize, maxBatchSize)
	inRange(flagQueueLimit, c.QueueLimit, 1<<24)
	inRange(flagWriters, c.Writers, maxWriters)
	if c.Concurrency < 0 || c.Concurrency > 1<<16 {
		errs = append(errs, fmt.Errorf("concurrency %d (from --%s): want 1-%d (0 for the default)", c.Concurrency, cliflag.DBConns, 1<<16))
	}
	inRange(flagMaxRecipients, c.MaxRecipients, maxMaxRecipients)
	if c.SenderBurst > 0 && c.SenderBurst < api.MaxBodyLen {
		errs = append(errs, fmt.Errorf("--%s %d: want at least the largest body (%d bytes), or 0 for the default", flagSenderBurst, c.SenderBurst, api.MaxBodyLen))
	}
	return errors.Join(errs...)
}
