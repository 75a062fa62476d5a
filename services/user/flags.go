package user

import (
	"fmt"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/shared/cliflag"
)

// Flags are the user service's own flags; natter-user and natter serve share
// them.
func Flags() []cli.Flag {
	d := DefaultConfig()
	return []cli.Flag{
		&cli.IntFlag{Name: "bcrypt-cost", Value: d.BcryptCost, EnvVars: []string{"NATTER_BCRYPT_COST"},
			Usage: fmt.Sprintf("bcrypt cost of new password hashes (%d-%d); each step doubles the CPU a register or login spends; lower it only for tests and benchmarks",
				bcrypt.MinCost, bcrypt.MaxCost)},
		&cli.DurationFlag{Name: "resume-ttl", Value: d.ResumeTTL, EnvVars: []string{"NATTER_RESUME_TTL"},
			Usage: "how long a resume token (log in again without the password after a dropped connection) stays valid; an explicit logout revokes it"},
		&cli.StringFlag{Name: "login-policy", Value: d.LoginPolicy, EnvVars: []string{"NATTER_LOGIN_POLICY"},
			Usage: "a login while the user is online elsewhere: kick (the new session wins; the old one is told and closed) or reject (errno 2, like the original)"},
	}
}

// ConfigFromFlags reads Flags (and --request-timeout) into a Config.
// Concurrency is left at its default: it depends on the database opened.
func ConfigFromFlags(c *cli.Context) Config {
	cfg := DefaultConfig()
	cfg.BcryptCost = c.Int("bcrypt-cost")
	cfg.LoginPolicy = c.String("login-policy")
	cfg.ResumeTTL = c.Duration("resume-ttl")
	if d := c.Duration(cliflag.RequestTimeout); d > 0 {
		cfg.RequestTimeout = d
	}
	return cfg
}
