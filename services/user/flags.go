package user

import (
	"fmt"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/shared/cliflag"
)

// Flag names of the user service.
const (
	flagBcryptCost      = "bcrypt-cost"
	flagResumeTTL       = "resume-ttl"
	flagLoginPolicy     = "login-policy"
	flagAccountFailures = "login-account-failures"
	flagAddressFailures = "login-address-failures"
	flagLoginDelay      = "login-delay"
	flagLoginMaxDelay   = "login-max-delay"
	flagFailureWindow   = "login-failure-window"
)

// Flags are the user service's own flags; natter-user and natter serve share
// them.
func Flags() []cli.Flag {
	d := DefaultConfig()
	return []cli.Flag{
		&cli.IntFlag{Name: flagBcryptCost, Value: d.BcryptCost, EnvVars: []string{"NATTER_BCRYPT_COST"},
			Usage: fmt.Sprintf("bcrypt cost of new password hashes (%d-%d); each step doubles the CPU a register or login spends; lower it only for tests and benchmarks",
				bcrypt.MinCost, bcrypt.MaxCost)},
		&cli.DurationFlag{Name: flagResumeTTL, Value: d.ResumeTTL, EnvVars: []string{"NATTER_RESUME_TTL"},
			Usage: "how long a resume token (log in again without the password after a dropped connection) stays valid; an explicit logout revokes it"},
		&cli.StringFlag{Name: flagLoginPolicy, Value: d.LoginPolicy, EnvVars: []string{"NATTER_LOGIN_POLICY"},
			Usage: "a login while the user is online elsewhere: kick (the new session wins; the old one is told and closed) or reject (errno 2, like the original)"},
		&cli.IntFlag{Name: flagAccountFailures, Value: d.Throttle.AccountFailures, EnvVars: []string{"NATTER_LOGIN_ACCOUNT_FAILURES"},
			Usage: "failed password logins of one account before each further one locks it (--login-delay, doubling); 0: accounts not throttled"},
		&cli.IntFlag{Name: flagAddressFailures, Value: d.Throttle.AddressFailures, EnvVars: []string{"NATTER_LOGIN_ADDRESS_FAILURES"},
			Usage: "failed password logins from one client address (IPv6: its /64) before each further one locks it; 0: addresses not throttled"},
		&cli.DurationFlag{Name: flagLoginDelay, Value: d.Throttle.Delay, EnvVars: []string{"NATTER_LOGIN_DELAY"},
			Usage: "lock after the first failed login past the free ones, doubled by each further failure; a login during a lock is refused (errno 119) without checking the password"},
		&cli.DurationFlag{Name: flagLoginMaxDelay, Value: d.Throttle.MaxDelay, EnvVars: []string{"NATTER_LOGIN_MAX_DELAY"},
			Usage: "longest lock (the lockout): past it an attacker gets one guess per this long"},
		&cli.DurationFlag{Name: flagFailureWindow, Value: d.Throttle.Window, EnvVars: []string{"NATTER_LOGIN_FAILURE_WINDOW"},
			Usage: "failed logins are forgotten this long after the last one (a successful login forgets its account's at once); at least --login-max-delay"},
	}
}

// ConfigFromFlags reads Flags (and --request-timeout) into a Config.
// Concurrency is left at its default: it depends on the database opened.
func ConfigFromFlags(c *cli.Context) Config {
	cfg := DefaultConfig()
	cfg.BcryptCost = c.Int(flagBcryptCost)
	cfg.LoginPolicy = c.String(flagLoginPolicy)
	cfg.ResumeTTL = c.Duration(flagResumeTTL)
	cfg.Throttle = ThrottleConfig{
		AccountFailures: c.Int(flagAccountFailures),
		AddressFailures: c.Int(flagAddressFailures),
		Delay:           c.Duration(flagLoginDelay),
		MaxDelay:        c.Duration(flagLoginMaxDelay),
		Window:          c.Duration(flagFailureWindow),
	}
	if d := c.Duration(cliflag.RequestTimeout); d > 0 {
		cfg.RequestTimeout = d
	}
	return cfg
}
