package cliflag

import (
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"
)

// NATS credential and TLS flag names.
const (
	NATSUser         = "nats-user"
	NATSPasswordFile = "nats-password-file"
	NATSCreds        = "nats-creds"
	NATSNkeyFile     = "nats-nkey-file"
	NATSTLSCA        = "nats-tls-ca"
	NATSTLSCert      = "nats-tls-cert"
	NATSTLSKey       = "nats-tls-key"
)

// NATSFlags are NATSFlag, NATSAuthFlags and the NATS TLS flags, which
// NATSOptions turns into connection options. Secrets are only ever read
// from files.
func NATSFlags() []cli.Flag {
	flags := []cli.Flag{NATSFlag()}
	flags = append(flags, NATSAuthFlags()...)
	return append(flags,
		&cli.StringFlag{Name: NATSTLSCA, EnvVars: []string{"NATTER_NATS_TLS_CA"},
			Usage: "PEM file of the CA(s) that signed the NATS server's certificate; setting it turns TLS on"},
		&cli.StringFlag{Name: NATSTLSCert, EnvVars: []string{"NATTER_NATS_TLS_CERT"},
			Usage: "PEM client certificate for NATS (mutual TLS; with --nats-tls-key)"},
		&cli.StringFlag{Name: NATSTLSKey, EnvVars: []string{"NATTER_NATS_TLS_KEY"},
			Usage: "PEM private key of --nats-tls-cert"},
	)
}

// NATSAuthFlags are the ways to authenticate to NATS: a user and a
// password file, a .creds file or an nkey seed file. The services and the
// gateway authenticate with them; natter serve requires them of whoever
// connects to its embedded NATS.
func NATSAuthFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: NATSUser, EnvVars: []string{"NATTER_NATS_USER"},
			Usage: "NATS user name (with --nats-password-file)"},
		&cli.StringFlag{Name: NATSPasswordFile, EnvVars: []string{"NATTER_NATS_PASSWORD_FILE"},
			Usage: "file holding the NATS password of --nats-user (a trailing newline is ignored)"},
		&cli.StringFlag{Name: NATSCreds, EnvVars: []string{"NATTER_NATS_CREDS"},
			Usage: "NATS credentials file (.creds: user JWT and nkey seed)"},
		&cli.StringFlag{Name: NATSNkeyFile, EnvVars: []string{"NATTER_NATS_NKEY_FILE"},
			Usage: "file holding a NATS user nkey seed (SU...)"},
	}
}

// NATSAuth is one way to authenticate to NATS, as NATSAuthFlags give it:
// User with Password (read from --nats-password-file), CredsFile, or
// NkeyFile; the zero value is none.
type NATSAuth struct {
	User, Password string
	CredsFile      string
	NkeyFile       string
}

// Set reports whether a way to authenticate is given.
func (a NATSAuth) Set() bool { return a.User != "" || a.CredsFile != "" || a.NkeyFile != "" }

// NATSAuthFromFlags reads NATSAuthFlags: the password file is read now, the
// other files are checked to be readable (an nkey file to hold a seed), so
// a missing one fails the start-up with its flag's name; at most one way
// may be given.
func NATSAuthFromFlags(c *cli.Context) (NATSAuth, error) {
	var (
		a     NATSAuth
		auths []string
	)
	user, pwFile := c.String(NATSUser), c.String(NATSPasswordFile)
	switch {
	case user != "" && pwFile == "":
		return NATSAuth{}, fmt.Errorf("--%s needs --%s", NATSUser, NATSPasswordFile)
	case user == "" && pwFile != "":
		return NATSAuth{}, fmt.Errorf("--%s needs --%s", NATSPasswordFile, NATSUser)
	case user != "":
		pw, err := readSecret(NATSPasswordFile, pwFile)
		if err != nil {
			return NATSAuth{}, err
		}
		a.User, a.Password = user, pw
		auths = append(auths, "--"+NATSUser)
	}
	if creds := c.String(NATSCreds); creds != "" {
		if err := checkReadable(NATSCreds, creds); err != nil {
			return NATSAuth{}, err
		}
		a.CredsFile = creds
		auths = append(auths, "--"+NATSCreds)
	}
	if seed := c.String(NATSNkeyFile); seed != "" {
		if err := checkReadable(NATSNkeyFile, seed); err != nil {
			return NATSAuth{}, err
		}
		if _, err := nats.NkeyOptionFromSeed(seed); err != nil {
			return NATSAuth{}, fmt.Errorf("--%s %s: %w", NATSNkeyFile, seed, err)
		}
		a.NkeyFile = seed
		auths = append(auths, "--"+NATSNkeyFile)
	}
	if len(auths) > 1 {
		return NATSAuth{}, fmt.Errorf("NATS authentication: give only one of %s", strings.Join(auths, ", "))
	}
	return a, nil
}

// Options are the connection options that authenticate with a (none for
// the zero value).
func (a NATSAuth) Options() ([]nats.Option, error) {
	switch {
	case a.User != "":
		return []nats.Option{nats.UserInfo(a.User, a.Password)}, nil
	case a.CredsFile != "":
		return []nats.Option{nats.UserCredentials(a.CredsFile)}, nil
	case a.NkeyFile != "":
		o, err := nats.NkeyOptionFromSeed(a.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("--%s %s: %w", NATSNkeyFile, a.NkeyFile, err)
		}
		return []nats.Option{o}, nil
	}
	return nil, nil
}

// NATSOptions turns the NATS credential and TLS flags into connection
// options (none set: none). Every file named is checked now, so a missing
// or unreadable one fails the start-up with the flag's name; at most one
// way to authenticate (user and password, creds, nkey) may be given.
func NATSOptions(c *cli.Context) ([]nats.Option, error) {
	auth, err := NATSAuthFromFlags(c)
	if err != nil {
		return nil, err
	}
	opts, err := auth.Options()
	if err != nil {
		return nil, err
	}
	if ca := c.String(NATSTLSCA); ca != "" {
		if err := checkReadable(NATSTLSCA, ca); err != nil {
			return nil, err
		}
		opts = append(opts, nats.RootCAs(ca))
	}
	cert, key := c.String(NATSTLSCert), c.String(NATSTLSKey)
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("--%s and --%s go together", NATSTLSCert, NATSTLSKey)
	}
	if cert != "" {
		for _, f := range [][2]string{{NATSTLSCert, cert}, {NATSTLSKey, key}} {
			if err := checkReadable(f[0], f[1]); err != nil {
				return nil, err
			}
		}
		opts = append(opts, nats.ClientCert(cert, key))
	}
	return opts, nil
}

// readSecret reads a one-line secret (a password, a DSN) from the file that
// flag names, without its trailing newline.
func readSecret(flag, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flag, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("--%s: %s is empty", flag, path)
	}
	return s, nil
}

// checkReadable fails unless path, named by flag, is a file that can be
// opened for reading.
func checkReadable(flag, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--%s: %w", flag, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return fmt.Errorf("--%s: %w", flag, err)
	} else if st.IsDir() {
		return fmt.Errorf("--%s: %s is a directory", flag, path)
	}
	return nil
}
