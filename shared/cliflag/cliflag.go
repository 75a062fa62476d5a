// Package cliflag holds the command-line flags that several natter binaries
// share (NATS, logging; the database flags' names), each with its NATTER_
// environment variable, and turns them into the typed values the binaries
// pass down. Opening a database is shared/dbflag's: this package links no
// database driver, so natter-gateway has none.
package cliflag

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/ops"
)

// Flag names.
const (
	NATS       = "nats"
	MySQLDSN   = "mysql-dsn"
	SQLitePath = "sqlite"
	DBConns    = "db-conns"
	LogLevel   = "log-level"
	LogFormat  = "log-format"
	Pprof      = "pprof"
	HTTP       = "http"
	// RequestTimeout is shared by the gateway and the services; in natter
	// serve one flag sets it for all.
	RequestTimeout = "request-timeout"
	// MySQLDSNFile names a file holding the DSN, to keep its password out
	// of the command line and the environment.
	MySQLDSNFile = "mysql-dsn-file"
)

// NATSFlag is the NATS server URL (comma-separated for several).
func NATSFlag() cli.Flag {
	return &cli.StringFlag{Name: NATS, Value: "nats://127.0.0.1:4222", EnvVars: []string{"NATTER_NATS"},
		Usage: "NATS server URL(s), comma-separated"}
}

// MySQLDSNFileFlag is --mysql-dsn-file, the alternative to --mysql-dsn that
// keeps the password in a file; dbflag.Flags has it, MySQLDSNFromFlags
// reads it.
func MySQLDSNFileFlag() cli.Flag {
	return &cli.StringFlag{Name: MySQLDSNFile, EnvVars: []string{"NATTER_MYSQL_DSN_FILE"},
		Usage: "file holding the MySQL/MariaDB DSN (instead of --" + MySQLDSN + "; a trailing newline is ignored)"}
}

// MySQLDSNFromFlags returns the MySQL DSN that --mysql-dsn or
// --mysql-dsn-file gives (read from the file, trailing newline trimmed),
// "" for none; both at once is an error.
func MySQLDSNFromFlags(c *cli.Context) (string, error) {
	dsn, file := c.String(MySQLDSN), c.String(MySQLDSNFile)
	switch {
	case dsn != "" && file != "":
		return "", fmt.Errorf("give --%s or --%s, not both", MySQLDSN, MySQLDSNFile)
	case file != "":
		return readSecret(MySQLDSNFile, file)
	}
	return dsn, nil
}

// LogFlags set the log level and format, where Go profiles are served
// (StartPprof), and where /healthz, /readyz and /metrics are (StartOps).
func LogFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: HTTP, EnvVars: []string{"NATTER_HTTP"},
			Usage: "serve /healthz, /readyz and /metrics (Prometheus) on this host:port, e.g. :8080; empty: off"},
		&cli.StringFlag{Name: Pprof, EnvVars: []string{"NATTER_PPROF"},
			Usage: "serve Go profiles (net/http/pprof, /debug/pprof/) on this host:port; keep it on loopback; empty: off"},
		&cli.StringFlag{Name: LogLevel, Value: "info", EnvVars: []string{"NATTER_LOG_LEVEL"},
			Usage: "log level: debug, info, warn or error"},
		&cli.StringFlag{Name: LogFormat, Value: "text", EnvVars: []string{"NATTER_LOG_FORMAT"},
			Usage: "log format: text or json"},
	}
}

// Logger builds the process logger from the log flags, writing to the
// app's ErrWriter (standard error unless set).
func Logger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String(LogLevel))); err != nil {
		return nil, fmt.Errorf("--%s: %w", LogLevel, err)
	}
	o := &slog.HandlerOptions{Level: level}
	var w io.Writer = os.Stderr
	if c.App != nil && c.App.ErrWriter != nil {
		w = c.App.ErrWriter // a test reads the log here
	}
	switch strings.ToLower(c.String(LogFormat)) {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--%s: want text or json, got %q", LogFormat, c.String(LogFormat))
}

// StartPprof serves net/http/pprof on the --pprof address, if one is set,
// until stop is called.
func StartPprof(c *cli.Context, log *slog.Logger) (stop func(), err error) {
	addr := c.String(Pprof)
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", Pprof, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof server", "err", err)
		}
	}()
	log.Info("serving Go profiles", "addr", ln.Addr().String())
	return func() { srv.Close(); <-done }, nil
}

// StartOps returns the process's operational endpoints, serving on the
// --http address if one is set; the caller adds its checks and metrics and
// closes it last.
func StartOps(c *cli.Context, log *slog.Logger) (*ops.Server, error) {
	s := ops.New(nil, log)
	if addr := c.String(HTTP); addr != "" {
		if err := s.Listen(addr); err != nil {
			return nil, fmt.Errorf("--%s: %w", HTTP, err)
		}
	}
	return s, nil
}
