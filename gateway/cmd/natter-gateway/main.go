// Command natter-gateway runs one natter gateway against an external NATS.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/shared/buildinfo"
	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/shared/natsconn"
)

func main() {
	app := &cli.App{
		Name:    "natter-gateway",
		Usage:   "hold natter client connections (TCP, JSON frames) and route them over NATS",
		Version: buildinfo.Version(),
		Flags:   append(append([]cli.Flag{cliflag.NATSFlag()}, gateway.Flags()...), cliflag.LogFlags()...),
		Action: func(c *cli.Context) error {
			log, err := cliflag.Logger(c)
			if err != nil {
				return err
			}
			cfg := gateway.ConfigFromFlags(c)
			if err := cfg.Validate(); err != nil {
				return err
			}
			stopPprof, err := cliflag.StartPprof(c, log)
			if err != nil {
				return err
			}
			defer stopPprof()
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			nc, err := natsconn.Connect(c.String(cliflag.NATS), "natter-gateway", log)
			if err != nil {
				return err
			}
			defer nc.Close()
			g, err := gateway.Start(ctx, nc, cfg, log)
			if err != nil {
				return err
			}
			<-ctx.Done()
			log.Info("stopping")
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
			defer cancel()
			if err := g.Stop(sctx); err != nil {
				log.Warn("stop", "err", err)
			}
			// Stop handed every ack over synchronously; flush what is left.
			return nc.FlushTimeout(5 * time.Second)
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "natter-gateway:", err)
		os.Exit(1)
	}
}
