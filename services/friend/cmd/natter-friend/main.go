// Command natter-friend runs natter's friend service: mutual friendships,
// friend lists with names and online state, and presence notices to online
// friends, served on NATS (natter.svc.friend.*, natter.presence).
package main

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/services/friend"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/svcmain"
)

func main() {
	svcmain.Main(&cli.App{
		Name:  "natter-friend",
		Usage: "natter friend service: mutual friendships, friend lists and presence notices over NATS",
		Flags: svcmain.Flags(friend.Flags()...),
		Action: func(c *cli.Context) error {
			cfg := friend.ConfigFromFlags(c)
			if err := cfg.Validate(); err != nil {
				return err
			}
			return svcmain.Run(c, "natter-friend", func(ctx context.Context, nc *nats.Conn, db *sqldb.DB, concurrency int, log *slog.Logger) (svcmain.Service, error) {
				cfg.Concurrency = concurrency
				return friend.Start(ctx, nc, db, cfg, log)
			})
		},
	})
}
