// Command natter-friend runs natter's friend service: mutual friendships,
// friend lists with names and online state, and presence notices to online
// friends, served on NATS (natter.svc.friend.*, natter.presence).
package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/services/friend"
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
			return svcmain.Run(c, "natter-friend", func(ctx context.Context, env svcmain.Env) (svcmain.Service, error) {
				cfg.Concurrency = env.Concurrency
				cfg.Registerer = env.Registerer
				return friend.Start(ctx, env.NC, env.DB, cfg, env.Log)
			})
		},
	})
}
