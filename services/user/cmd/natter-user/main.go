// Command natter-user runs natter's user service: accounts, logins and the
// gateways' presence leases, served on NATS (natter.svc.user.*).
package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/services/user"
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
			return svcmain.Run(c, "natter-user", func(ctx context.Context, env svcmain.Env) (svcmain.Service, error) {
				cfg.Concurrency = env.Concurrency
				cfg.Registerer = env.Registerer
				return user.Start(ctx, env.NC, env.DB, cfg, env.Log)
			})
		},
	})
}
