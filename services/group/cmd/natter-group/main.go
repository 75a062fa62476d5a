// Command natter-group runs natter's group service: groups, their members and
// group chat, served on NATS (natter.svc.group.*).
package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/services/group"
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
			return svcmain.Run(c, "natter-group", func(ctx context.Context, env svcmain.Env) (svcmain.Service, error) {
				cfg.Concurrency = env.Concurrency
				cfg.Registerer = env.Registerer
				return group.Start(ctx, env.NC, env.DB, cfg, env.Log)
			})
		},
	})
}
