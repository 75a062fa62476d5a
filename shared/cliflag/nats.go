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

// NATSFlags are NATSFlag and the NATS credential and TLS flags, which
// NATSOptions turns into connection options. Secrets are only ever read
// from files.
func NATSFlags() []cli.Flag {
	return []cli.Flag{
		NATSFlag(),
		&cli.StringFlag{Name: NATSUser, EnvVars: []string{"NATTER_NATS_USER"},
			Usage: "NATS user name (with --nats-password-file)"},
		&cli.StringFlag{Name: NATSPasswordFile, EnvVars: []string{"NATTER_NATS_PASSWORD_FILE"},
			Usage: "file holding the NATS password of --nats-user (a trailing newline is ignored)"},
		&cli.StringFlag{Name: NATSCreds, EnvVars: []string{"NATTER_NATS_CREDS"},
			Usage: "NATS credentials file (.creds: user JWT and nkey seed)"},
		&cli.StringFlag{Name: NATSNkeyFile, EnvVars: []string{"NATTER_NATS_NKEY_FILE"},
			Usage: "file holding a NATS user nkey seed (SU...)"},
		&cli.StringFlag{Name: NATSTLSCA, EnvVars: []string{"NATTER_NATS_TLS_CA"},
			Usage: "PEM file of the CA(s) that signed the NATS server's certificate; setting it turns TLS on"},
		&cli.StringFlag{Name: NATSTLSCert, EnvVars: []string{"NATTER_NATS_TLS_CERT"},
			Usage: "PEM client certificate for NATS (mutual TLS; with --nats-tls-key)"},
		&cli.StringFlag{Name: NATSTLSKey, EnvVars: []string{"NATTER_NATS_TLS_KEY"},
			Usage: "PEM private key of --nats-tls-cert"},
	}
}

// NATSOptions turns the NATS credential and TLS flags into connection
// options (none set: none). Every file named is checked now, so a missing
// or unreadable one fails the start-up with the flag's name; at most one
// way to authenticate (user and password, creds, nkey) may be given.
func NATSOptions(c *cli.Context) ([]nats.Option, error) {
	var (
		opts  []nats.Option
		auths []string
	)
	user, pwFile := c.String(NATSUser), c.String(NATSPasswordFile)
	switch {
	case user != "" && pwFile == "":
		return nil, fmt.Errorf("--%s needs --%s", NATSUser, NATSPasswordFile)
	case user == "" && pwFile != "":
		return nil, fmt.Errorf("--%s needs --%s", NATSPasswordFile, NATSUser)
	case user != "":
		pw, err := readSecret(NATSPasswordFile, pwFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserInfo(user, pw))
		auths = append(auths, "--"+NATSUser)
	}
	if creds := c.String(NATSCreds); creds != "" {
		if err := checkReadable(NATSCreds, creds); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(creds))
		auths = append(auths, "--"+NATSCreds)
	}
	if seed := c.String(NATSNkeyFile); seed != "" {
		if err := checkReadable(NATSNkeyFile, seed); err != nil {
			return nil, err
		}
		o, err := nats.NkeyOptionFromSeed(seed)
		if err != nil {
			return nil, fmt.Errorf("--%s %s: %w", NATSNkeyFile, seed, err)
		}
		opts = append(opts, o)
		auths = append(auths, "--"+NATSNkeyFile)
	}
	if len(auths) > 1 {
		return nil, fmt.Errorf("NATS authentication: give only one of %s", strings.Join(auths, ", "))
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
