package cliflag

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/urfave/cli/v2"
)

// Process is what every long-running natter binary (the services, the
// gateway, natter serve, natter bench) starts with: the logger the flags
// ask for (Logger), Go profiles on --pprof (StartPprof) and the signals
// that end it (SIGINT, SIGTERM) or, if it asks for them (Hangups), reload
// it (SIGHUP).
type Process struct {
	log         *slog.Logger
	stopPprof   func()
	stopSignals context.CancelFunc

	mu  sync.Mutex
	hup chan os.Signal
}

// StartProcess builds the logger, starts the profiles and returns a
// context that ends at the first SIGINT or SIGTERM. Stop the Process when
// the binary's work is done.
func StartProcess(c *cli.Context) (context.Context, *Process, error) {
	log, err := Logger(c)
	if err != nil {
		return nil, nil, err
	}
	stopPprof, err := StartPprof(c, log)
	if err != nil {
		return nil, nil, err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	return ctx, &Process{log: log, stopPprof: stopPprof, stopSignals: stop}, nil
}

// Log is the process's logger.
func (p *Process) Log() *slog.Logger { return p.log }

// Hangups returns the channel that the SIGHUPs sent to the process arrive
// on from now on (without it, SIGHUP ends the process).
func (p *Process) Hangups() <-chan os.Signal {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hup == nil {
		p.hup = make(chan os.Signal, 1)
		signal.Notify(p.hup, syscall.SIGHUP)
	}
	return p.hup
}

// StopSignals restores the default handling of SIGINT and SIGTERM: a
// second signal while the process stops ends it at once.
func (p *Process) StopSignals() { p.stopSignals() }

// Stop restores the default handling of every signal and stops the
// profiles.
func (p *Process) Stop() {
	p.stopSignals()
	p.mu.Lock()
	if p.hup != nil {
		signal.Stop(p.hup)
	}
	p.mu.Unlock()
	p.stopPprof()
}
