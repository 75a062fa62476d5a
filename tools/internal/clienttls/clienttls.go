// Package clienttls is the client side of TLS for natter chat and natter
// bench: the --tls, --tls-ca and --tls-server-name flags and the
// tls.Config they make.
package clienttls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// Flags are the TLS flags of a client command; envPrefix names their
// environment variables (NATTER_CHAT gives NATTER_CHAT_TLS, ...).
func Flags(envPrefix string) []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "tls", EnvVars: []string{envPrefix + "_TLS"},
			Usage: "connect with TLS (to a gateway's --tls-listen; natter bench: ws:// addresses become wss://); the server's certificate is verified"},
		&cli.StringFlag{Name: "tls-ca", EnvVars: []string{envPrefix + "_TLS_CA"},
			Usage: "with --tls: trust the CA certificates in this PEM file (a private CA) instead of the system's"},
		&cli.StringFlag{Name: "tls-server-name", EnvVars: []string{envPrefix + "_TLS_SERVER_NAME"},
			Usage: "with --tls: the name the server's certificate must have; default: the host of the address"},
	}
}

// FromFlags is the client configuration the flags ask for; nil without
// --tls.
func FromFlags(c *cli.Context) (*tls.Config, error) {
	return New(c.Bool("tls"), c.String("tls-ca"), c.String("tls-server-name"))
}

// New is a client configuration: TLS 1.2 at least, the certificate
// verified against the CAs in caFile (empty: the system's) for serverName
// (empty: the host dialled). It is nil when on is false, which is an error
// if caFile or serverName is set.
func New(on bool, caFile, serverName string) (*tls.Config, error) {
	if !on {
		if caFile != "" || serverName != "" {
			return nil, errors.New("--tls-ca and --tls-server-name need --tls")
		}
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", caFile)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}
