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
		&cli.IntFlag{Name: "login-account-failures", Value: d.Throttle.AccountFailures, EnvVars: []string{"NATTER_LOGIN_ACCOUNT_FAILURES"},
			Usage: "failed password logins of one account before each further one locks it (--login-delay, doubling); 0: accounts not throttled"},
		&cli.IntFlag{Name: "login-address-failures", Value: d.Throttle.AddressFailures, EnvVars: []string{"NATTER_LOGIN_ADDRESS_FAILURES"},
			Usage: "failed password logins from one client address (IPv6: its /64) before each further one locks it; 0: addresses not throttled"},
		&cli.DurationFlag{Name: "login-delay", Value: d.Throttle.Delay, EnvVars: []string{"NATTER_LOGIN_DELAY"},
			Usage: "lock after the first failed login past the free ones, doubled by each further failure; a login during a lock is refused (errno 119) without checking the password"},
		&cli.DurationFlag{Name: "login-max-delay", Value: d.Throttle.MaxDelay, EnvVars: []string{"NATTER_LOGIN_MAX_DELAY"},
			Usage: "longest lock (the lockout): past it an attacker gets one guess per this long"},
		&cli.DurationFlag{Name: "login-failure-window", Value: d.Throttle.Window, EnvVars: []string{"NATTER_LOGIN_FAILURE_WINDOW"},
			Usage: "failed logins are forgotten this long after the last one (a successful login forgets its account's at once); at least --login-max-delay"},
	}
}

// ConfigFromFlags reads Flags (and --request-timeout) into a Config.
// Concurrency is left at its default: it depends on the database opened.
func ConfigFromFlags(c *cli.Context) Config {
	cfg := DefaultConfig()
	cfg.BcryptCost = c.Int("bcrypt-cost")
	cfg.LoginPolicy = c.String("login-policy")
	cfg.ResumeTTL = c.Duration("resume-ttl")
	cfg.Throttle = ThrottleConfig{
		AccountFailures: c.Int("login-account-failures"),
		AddressFailures: c.Int("login-address-failures"),
		Delay:           c.Duration("login-delay"),
		MaxDelay:        c.Duration("login-max-delay"),
		Window:          c.Duration("login-failure-window"),
	}
	if d := c.Duration(cliflag.RequestTimeout); d > 0 {
		cfg.RequestTimeout = d
	}
	return cfg
}
