// Command natter-gateway runs one natter gateway against an external NATS.
// On SIGTERM or SIGINT it drains: /readyz fails, the listener closes, and
// the open connections are moved to the other gateways over --drain-window
// (a second signal stops at once). On SIGHUP it reloads the TLS certificate
// (--tls-cert, --tls-key).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/shared/buildinfo"
	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/shared/natsconn"
)

// stopMargin is how long the stop after the drain window may take: the last
// connections' writes, the acks, the leave request and the NATS flush.
const stopMargin = 15 * time.Second

// reloadTLS reloads the TLS certificate on SIGHUP (a failure is logged by
// the gateway, which keeps the certificate in use).
func reloadTLS(g *gateway.Gateway, cfg gateway.Config, log *slog.Logger) {
	if !cfg.TLS() {
		log.Info("SIGHUP: nothing to reload (no TLS listener)")
		return
	}
	log.Info("SIGHUP: reloading the TLS certificate")
	g.ReloadTLS()
}

func main() {
	flags := cliflag.NATSFlags()
	flags = append(flags, gateway.Flags()...)
	flags = append(flags, cliflag.LogFlags()...)
	flags = append(flags, cliflag.PrintConfigFlag())
	app := &cli.App{
		Name:    "natter-gateway",
		Usage:   "hold natter client connections (TCP, and WebSocket with --ws-listen; JSON frames) and route them over NATS",
		Version: buildinfo.Version(),
		Flags:   flags,
		Action: func(c *cli.Context) error {
			if done, err := cliflag.HandlePrintConfig(c); done {
				return err
			}
			cfg := gateway.ConfigFromFlags(c)
			if err := cfg.Validate(); err != nil {
				return err
			}
			if err := cfg.CheckTLSFiles(); err != nil {
				return err
			}
			natsOpts, err := cliflag.NATSOptions(c)
			if err != nil {
				return err
			}
			ctx, proc, err := cliflag.StartProcess(c)
			if err != nil {
				return err
			}
			defer proc.Stop()
			return run(ctx, proc.StopSignals, proc.Hangups(), c, cfg, natsOpts, proc.Log())
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "natter-gateway:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends (a signal), then drains; stopSignals restores
// the default signal handling, so a second signal ends the process at once.
// Each signal on hup reloads the TLS certificate.
func run(ctx context.Context, stopSignals func(), hup <-chan os.Signal, c *cli.Context, cfg gateway.Config, natsOpts []nats.Option, log *slog.Logger) (err error) {
	o, err := cliflag.StartOps(c, log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, o.Shutdown(ctx, 5*time.Second)) }()
	o.AddCheck("gateway", func(context.Context) error { return errors.New("starting") })
	nm, err := natsconn.NewMetrics(o.Registry(), "gateway")
	if err != nil {
		return err
	}
	// NATS may come up after the gateway (a cluster booting): wait for it,
	// for as long as a service waits.
	cctx, cancelConnect := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelConnect()
	nc, err := natsconn.ConnectRetry(cctx, c.String(cliflag.NATS), "natter-gateway", log, append(natsOpts, natsconn.Observe(nm))...)
	if err != nil {
		return err
	}
	defer nc.Close()
	cfg.Registerer = o.Registry()
	g, err := gateway.Start(ctx, nc, cfg, log)
	if err != nil {
		return err
	}
	o.AddCheck("gateway", g.Ready)
	for serving := true; serving; {
		select {
		case <-ctx.Done():
			serving = false
		case <-hup:
			reloadTLS(g, cfg, log)
		}
	}
	stopSignals()
	log.Info("draining", "window", cfg.DrainWindow)
	o.SetDraining()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.DrainWindow+stopMargin)
	defer cancel()
	if err := g.Drain(dctx); err != nil {
		log.Warn("stop", "err", err)
	}
	// Drain handed every ack over synchronously; flush what is left.
	return nc.FlushTimeout(5 * time.Second)
}
