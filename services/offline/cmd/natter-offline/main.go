// Command natter-offline runs natter's offline service: the durable
// per-user inbox that stores every chat message before its sender is
// answered and keeps it until the recipient acknowledges it.
package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/services/offline"
	"github.com/natter-chat/natter/shared/svcmain"
)

func main() {
	svcmain.Main(&cli.App{
		Name:  "natter-offline",
		Usage: "natter's durable per-user inbox service",
		Flags: svcmain.Flags(offline.Flags()...),
		Action: func(c *cli.Context) error {
			cfg := offline.ConfigFromFlags(c)
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("invalid flags: %w", err)
			}
			return svcmain.Run(c, "natter-offline", func(ctx context.Context, env svcmain.Env) (svcmain.Service, error) {
				cfg.Concurrency = env.Concurrency
				cfg.Registerer = env.Registerer
				s, err := offline.Start(ctx, env.NC, env.DB, cfg, env.Log)
				if err != nil {
					return nil, err
				}
				// Not ready for stores while the storage is full.
				env.Ops.AddCheck("store", s.StoreReady)
				return s, nil
			})
		},
	})
}
