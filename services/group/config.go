package group

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/shared/cliflag"
)

// Defaults of DefaultConfig.
const (
	DefaultConcurrency    = 4
	DefaultRequestTimeout = 5 * time.Second
	DefaultCacheGroups    = 4096
)

// Limits of the requests and the configuration.
const (
	// sendConcurrencyFactor: sends spend almost all their time waiting for
	// the offline service, not on the database, so they run on a runner of
	// their own this many times Concurrency; the offline service batches
	// what arrives together into one transaction.
	sendConcurrencyFactor = 16
	maxConcurrency        = 1 << 12
	maxCacheGroups        = 1 << 22
)

// Config configures the service.
type Config struct {
	// Concurrency is how many requests other than sends are handled at once;
	// size it like the database pool. Sends run up to 16 times as many at
	// once (they mostly wait for the offline service).
	Concurrency int
	// RequestTimeout bounds the handling of one request, the calls to the
	// user and offline services included.
	RequestTimeout time.Duration
	// CacheGroups is the most groups whose member lists one instance keeps
	// in memory for group chat (least recently used ones are dropped). A
	// member is 8 bytes: the worst case, every cached group full, is
	// CacheGroups x api.MaxGroupMembers x 8 bytes.
	CacheGroups int
	// Registerer is where the service registers its metrics (natter_*,
	// service="group"); nil: they are counted but not registered anywhere.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the configuration the binaries start from.
func DefaultConfig() Config {
	return Config{
		Concurrency:    DefaultConcurrency,
		RequestTimeout: DefaultRequestTimeout,
		CacheGroups:    DefaultCacheGroups,
	}
}

// Validate reports every field of c that is out of range, each naming its
// flag.
func (c Config) Validate() error {
	var errs []error
	if c.Concurrency < 1 || c.Concurrency > maxConcurrency {
		errs = append(errs, fmt.Errorf("concurrency %d (from --%s): want 1-%d", c.Concurrency, cliflag.DBConns, maxConcurrency))
	}
	if c.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--%s %v: want more than 0", cliflag.RequestTimeout, c.RequestTimeout))
	}
	if c.CacheGroups < 1 || c.CacheGroups > maxCacheGroups {
		errs = append(errs, fmt.Errorf("--%s %d: want 1-%d", FlagCacheGroups, c.CacheGroups, maxCacheGroups))
	}
	return errors.Join(errs...)
}
