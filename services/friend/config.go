package friend

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/shared/cliflag"
)

// Limits of the configuration.
const (
	// MaxCoalesceWindow is the longest CoalesceWindow accepted: presence
	// notices later than this would look broken to users.
	MaxCoalesceWindow = time.Minute
)

// Config configures the service.
type Config struct {
	// Concurrency is how many requests are handled at once; size it like
	// the database pool.
	Concurrency int
	// RequestTimeout bounds the handling of one request (database work and
	// the calls to the user service included) and one presence lookup.
	RequestTimeout time.Duration
	// CoalesceWindow is how long presence events are gathered, from the
	// first one, before they are fanned out to friends: within it only each
	// user's latest event counts, and the friends of all of them are looked
	// up in one query (per 1000 users).
	CoalesceWindow time.Duration
	// Registerer is where the service registers its metrics (natter_*,
	// service="friend"); nil: they are counted but not registered anywhere.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the configuration the binaries start from.
func DefaultConfig() Config {
	return Config{
		Concurrency:    4,
		RequestTimeout: 5 * time.Second,
		CoalesceWindow: 200 * time.Millisecond,
	}
}

// Validate reports every invalid field of c, each naming its flag.
func (c Config) Validate() error {
	var errs []error
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d (from --%s): want at least 1", c.Concurrency, cliflag.DBConns))
	}
	if c.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--%s %v: want more than 0", cliflag.RequestTimeout, c.RequestTimeout))
	}
	if c.CoalesceWindow <= 0 || c.CoalesceWindow > MaxCoalesceWindow {
		errs = append(errs, fmt.Errorf("--%s %v: want more than 0 and at most %v",
			flagPresenceCoalesce, c.CoalesceWindow, MaxCoalesceWindow))
	}
	return errors.Join(errs...)
}
