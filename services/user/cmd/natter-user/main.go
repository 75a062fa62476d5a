// Command natter-user runs natter's user service: accounts, logins and the
// gateways' presence leases, served on NATS (natter.svc.user.*).
package main

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/services/user"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/svcmain"
)

func main() {
	svcmain.Main(&cli.App{
		Name:  "natter-user",
		Usage: "natter user service: accounts, logins and gateway presence leases over NATS",
		Flags: svcmain.Flags(user.Flags()...),
		Action: func(c *cli.Context) error {
			cfg := user.ConfigFromFlags(c)
			if err := cfg.Validate(); err != nil {
				return err
			}
			return svcmain.Run(c, "natter-user", func(ctx context.Context, nc *nats.Conn, db *sqldb.DB, concurrency int, log *slog.Logger) (svcmain.Service, error) {
				cfg.Concurrency = concurrency
				return user.Start(ctx, nc, db, cfg, log)
			})
		},
	})
}
