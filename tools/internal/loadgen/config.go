package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Workload names.
const (
	WorkloadOneToOne = "one-to-one"
)

// Mode is how senders pace themselves.
type Mode string

// Modes.
const (
	// Closed: a sender sends its next message once the previous one arrived
	// (or failed). Measures the system's capacity at a fixed concurrency.
	Closed Mode = "closed"
	// Open: messages go out on a schedule at a fixed total rate whatever
	// arrives; what cannot be sent because too much is outstanding is
	// skipped.
	Open Mode = "open"
)

// Config configures a run.
type Config struct {
	Addrs    []string // gateways; connections are spread over them round-robin
	Workload string
	Password string // for every simulated user

	Pairs          int     // one-to-one: sender/receiver pairs
	Mode           Mode    // closed or open loop
	Rate           float64 // open loop: messages per second in total
	MaxOutstanding int     // open loop: per pair; beyond it scheduled messages are skipped
	MsgSize        int     // bytes of "msg" text per chat

	Warmup   time.Duration // sending, checked, not measured
	Duration time.Duration // the measured window
	Drain    time.Duration // after sending stops, wait this long at most for what is outstanding
	Timeout  time.Duration // hard stop for the whole run, setup included; 0: derived

	AckInterval      time.Duration // receivers acknowledge what they got this often
	SetupConcurrency int           // registrations and logins at once

	Progress io.Writer // a progress line every second; nil: none
}

// DefaultConfig returns the defaults of `natter bench`.
func DefaultConfig() Config {
	return Config{
		Addrs:            []string{"127.0.0.1:6000"},
		Workload:         WorkloadOneToOne,
		Password:         "bench-password",
		Pairs:            50,
		Mode:             Closed,
		MaxOutstanding:   256,
		MsgSize:          32,
		Warmup:           2 * time.Second,
		Duration:         10 * time.Second,
		Drain:            5 * time.Second,
		AckInterval:      10 * time.Millisecond,
		SetupConcurrency: 16,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case len(c.Addrs) == 0:
		return errors.New("no address to connect to")
	case c.Workload != WorkloadOneToOne:
		return fmt.Errorf("workload %q: want %s", c.Workload, WorkloadOneToOne)
	case c.Password == "" || len(c.Password) > 72:
		return errors.New("password: want 1-72 bytes")
	case c.Pairs < 1:
		return fmt.Errorf("pairs %d: want at least 1", c.Pairs)
	case c.Mode != Closed && c.Mode != Open:
		return fmt.Errorf("mode %q: want %s or %s", c.Mode, Closed, Open)
	case c.Mode == Open && c.Rate <= 0:
		return errors.New("open mode needs a rate above 0 (messages per second in total)")
	case c.Mode == Closed && c.Rate != 0:
		return errors.New("a rate only applies to open mode")
	case c.MaxOutstanding < 1:
		return fmt.Errorf("max outstanding %d: want at least 1", c.MaxOutstanding)
	case c.MsgSize < 1 || c.MsgSize > 60000:
		return fmt.Errorf("message size %d: want 1-60000 bytes", c.MsgSize)
	case c.Warmup < 0 || c.Drain < 0:
		return errors.New("warmup and drain must not be negative")
	case c.Duration <= 0:
		return fmt.Errorf("duration %s: want more than 0", c.Duration)
	case c.Timeout < 0:
		return errors.New("timeout must not be negative")
	case c.Timeout > 0 && c.Timeout <= c.Warmup+c.Duration+c.Drain:
		return fmt.Errorf("timeout %s: want more than warmup + duration + drain (%s), plus time for the setup",
			c.Timeout, c.Warmup+c.Duration+c.Drain)
	case c.AckInterval <= 0:
		return fmt.Errorf("ack interval %s: want more than 0", c.AckInterval)
	case c.SetupConcurrency < 1:
		return fmt.Errorf("setup concurrency %d: want at least 1", c.SetupConcurrency)
	}
	return nil
}

// hardTimeout is the bound on the whole run.
func (c Config) hardTimeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return c.Warmup + c.Duration + c.Drain + 2*time.Minute
}

// Run runs the configured workload. A non-nil Report comes back whenever the
// workload got as far as sending, also with an error (a hard stop); whether
// the delivery checks passed is Report.OK.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch cfg.Workload {
	case WorkloadOneToOne:
		return OneToOne(ctx, cfg, log)
	}
	return nil, fmt.Errorf("unknown workload %q", cfg.Workload)
}
