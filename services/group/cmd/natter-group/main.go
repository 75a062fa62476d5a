// Command natter-group runs natter's group service: groups, their members and
// group chat, served on NATS (natter.svc.group.*).
package main

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/services/group"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/svcmain"
)

func main() {
	svcmain.Main(&cli.App{
		Name:  "natter-group",
		Usage: "natter group service: groups, members and group chat over NATS",
		Flags: svcmain.Flags(group.Flags()...),
		Action: func(c *cli.Context) error {
			cfg := group.ConfigFromFlags(c)
			if err := cfg.Validate(); err != nil {
				return err
			}
			return svcmain.Run(c, "natter-group", func(ctx context.Context, nc *nats.Conn, db *sqldb.DB, concurrency int, log *slog.Logger) (svcmain.Service, error) {
				cfg.Concurrency = concurrency
				return group.Start(ctx, nc, db, cfg, log)
			})
		},
	})
}
