package group

import (
	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/cliflag"
)

// FlagCacheGroups is the name of the member cache size flag.
const FlagCacheGroups = "group-cache"

// Flags are the group service's own flags; natter-group and natter serve
// share them.
func Flags() []cli.Flag {
	d := DefaultConfig()
	return []cli.Flag{
		&cli.IntFlag{Name: FlagCacheGroups, Value: d.CacheGroups, EnvVars: []string{"NATTER_GROUP_CACHE"},
			Usage: "most groups whose member lists one group service instance keeps in memory for group chat (each send still checks the group's version, so a cached list is never stale)"},
	}
}

// ConfigFromFlags reads Flags (and --request-timeout) into a Config.
// Concurrency is left at its default: it depends on the database opened.
func ConfigFromFlags(c *cli.Context) Config {
	cfg := DefaultConfig()
	cfg.CacheGroups = c.Int(FlagCacheGroups)
	if d := c.Duration(cliflag.RequestTimeout); d > 0 {
		cfg.RequestTimeout = d
	}
	return cfg
}
