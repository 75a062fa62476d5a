package friend

import (
	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/cliflag"
)

// Flag names of the friend service.
const flagPresenceCoalesce = "presence-coalesce"

// Flags are the friend service's own flags; natter-friend and natter serve
// share them.
func Flags() []cli.Flag {
	d := DefaultConfig()
	return []cli.Flag{
		&cli.DurationFlag{Name: flagPresenceCoalesce, Value: d.CoalesceWindow, EnvVars: []string{"NATTER_PRESENCE_COALESCE"},
			Usage: "gather presence events this long before telling friends: only each user's latest state counts, and all their friends are looked up in one query"},
	}
}

// ConfigFromFlags reads Flags (and --request-timeout) into a Config.
// Concurrency is left at its default: it depends on the database opened.
func ConfigFromFlags(c *cli.Context) Config {
	cfg := DefaultConfig()
	cfg.CoalesceWindow = c.Duration(flagPresenceCoalesce)
	if d := c.Duration(cliflag.RequestTimeout); d > 0 {
		cfg.RequestTimeout = d
	}
	return cfg
}
