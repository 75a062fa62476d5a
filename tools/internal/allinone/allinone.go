// Package allinone assembles a whole natter system in one process: an
// embedded nats-server, the user, offline, friend and group services and one
// gateway. It is
// `natter serve`, and the end-to-end tests build their clusters from the
// same parts. Every component's metrics go to one registry
// (Config.Registerer), and AddChecks gives the process's readiness checks.
package allinone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/services/friend"
	"github.com/natter-chat/natter/services/group"
	"github.com/natter-chat/natter/services/offline"
	"github.com/natter-chat/natter/services/user"
	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/shared/natsconn"
	"github.com/natter-chat/natter/shared/ops"
	"github.com/natter-chat/natter/shared/sqldb"
)

// Config configures the all-in-one system.
type Config struct {
	Gateway  gateway.Config
	User     user.Config
	Offline  offline.Config
	Friend   friend.Config
	Group    group.Config
	DataDir  string // SQLite lives here unless MySQLDSN is set
	MySQLDSN string
	DBConns  int
	NATS     NATSConfig
	// Registerer is where the services (those whose own Registerer is
	// nil) and the NATS connections register their metrics; nil: they are
	// counted but not registered anywhere.
	Registerer prometheus.Registerer
}

// DefaultConfig is every component's defaults, SQLite under dataDir.
func DefaultConfig(dataDir string) Config {
	return Config{
		Gateway: gateway.DefaultConfig(),
		User:    user.DefaultConfig(),
		Offline: offline.DefaultConfig(),
		Friend:  friend.DefaultConfig(),
		Group:   group.DefaultConfig(),
		DataDir: dataDir,
		DBConns: 16,
	}
}

// System is a running all-in-one natter.
type System struct {
	log     *slog.Logger
	ns      *server.Server
	db      *sqldb.DB
	conns   []*nats.Conn
	users   *user.Service
	offline *offline.Service
	friends *friend.Service
	groups  *group.Service
	gw      *gateway.Gateway
}

// Start brings the system up; on error everything started is stopped.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (sys *System, err error) {
	s := &System{log: log}
	defer func() {
		if err != nil {
			s.Stop(context.WithoutCancel(ctx))
		}
	}()
	if s.ns, err = StartNATS(cfg.NATS, log); err != nil {
		return nil, err
	}
	auth, err := cfg.NATS.Auth.Options()
	if err != nil {
		return nil, err
	}
	if cfg.MySQLDSN != "" {
		s.db, err = sqldb.OpenMySQL(ctx, cfg.MySQLDSN, cfg.DBConns)
	} else {
		s.db, err = sqldb.OpenSQLite(filepath.Join(cfg.DataDir, "natter.db"))
	}
	if err != nil {
		return nil, err
	}
	if cfg.Registerer != nil { // one registry for all
		for _, r := range []*prometheus.Registerer{&cfg.User.Registerer, &cfg.Offline.Registerer,
			&cfg.Friend.Registerer, &cfg.Group.Registerer} {
			if *r == nil {
				*r = cfg.Registerer
			}
		}
		if cfg.Gateway.Registerer == nil {
			cfg.Gateway.Registerer = cfg.Registerer
		}
	}
	connect := func(name string) (*nats.Conn, error) {
		opts := append([]nats.Option{nats.InProcessServer(s.ns)}, auth...)
		if cfg.Registerer != nil {
			m, err := natsconn.NewMetrics(cfg.Registerer, strings.TrimPrefix(name, "natter-"))
			if err != nil {
				return nil, err
			}
			opts = append(opts, natsconn.Observe(m))
		}
		nc, err := natsconn.Connect("", name, log, opts...)
		if err == nil {
			s.conns = append(s.conns, nc)
		}
		return nc, err
	}
	nc, err := connect("natter-user")
	if err != nil {
		return nil, err
	}
	if s.users, err = user.Start(ctx, nc, s.db, cfg.User, log.With("service", "user")); err != nil {
		return nil, err // Start says "start user service: ..."
	}
	if nc, err = connect("natter-offline"); err != nil {
		return nil, err
	}
	if s.offline, err = offline.Start(ctx, nc, s.db, cfg.Offline, log.With("service", "offline")); err != nil {
		return nil, err // Start says "start offline service: ..."
	}
	if nc, err = connect("natter-friend"); err != nil {
		return nil, err
	}
	if s.friends, err = friend.Start(ctx, nc, s.db, cfg.Friend, log.With("service", "friend")); err != nil {
		return nil, err // Start says "start friend service: ..."
	}
	if nc, err = connect("natter-group"); err != nil {
		return nil, err
	}
	if s.groups, err = group.Start(ctx, nc, s.db, cfg.Group, log.With("service", "group")); err != nil {
		return nil, err // Start says "start group service: ..."
	}
	if nc, err = connect("natter-gateway"); err != nil {
		return nil, err
	}
	if s.gw, err = gateway.Start(ctx, nc, cfg.Gateway, log.With("service", "gateway")); err != nil {
		return nil, fmt.Errorf("start gateway: %w", err)
	}
	return s, nil
}

// Addr is the gateway's plain TCP address, nil when Gateway.Listen is
// empty.
func (s *System) Addr() net.Addr { return s.gw.Addr() }

// TLSAddr is the gateway's TCP address with TLS, nil when
// Gateway.TLSListen is empty.
func (s *System) TLSAddr() net.Addr { return s.gw.TLSAddr() }

// WSSAddr is the gateway's WebSocket address over TLS (wss://WSSAddr/ws),
// nil when Gateway.WSSListen is empty.
func (s *System) WSSAddr() net.Addr { return s.gw.WSSAddr() }

// ReloadTLS reloads the gateway's TLS certificate (gateway.ReloadTLS).
func (s *System) ReloadTLS() error { return s.gw.ReloadTLS() }

// WSAddr is the gateway's WebSocket address (ws://WSAddr/ws), nil when
// Gateway.WSListen is empty.
func (s *System) WSAddr() net.Addr { return s.gw.WSAddr() }

// DefaultServeWSListen is where natter serve accepts WebSocket clients and
// serves the web page unless told otherwise (natter-gateway has no
// WebSocket unless --ws-listen is given). Loopback only, as the TCP
// default.
const DefaultServeWSListen = "127.0.0.1:6080"

// ServeGatewayDefaults are the gateway defaults of natter serve: those of
// natter-gateway, plus WebSocket on DefaultServeWSListen and the web page.
func ServeGatewayDefaults() gateway.Config {
	d := gateway.DefaultConfig()
	d.WSListen = DefaultServeWSListen
	d.Web = true
	return d
}

// AddChecks adds the system's readiness checks to o: "nats" (the embedded
// server runs, every connection to it is up, and it answers a round trip),
// "database" (it answers a ping) and "gateway" (gateway.Ready).
func (s *System) AddChecks(o *ops.Server) {
	o.AddCheck("nats", s.natsReady)
	o.AddCheck("database", s.db.Alive)
	o.AddCheck("gateway", s.gw.Ready)
}

func (s *System) natsReady(ctx context.Context) error {
	if !s.ns.Running() {
		return errors.New("embedded nats-server is not running")
	}
	for _, nc := range s.conns {
		if err := natsconn.Ready(nc)(ctx); err != nil {
			return fmt.Errorf("%s: %w", nc.Opts.Name, err)
		}
	}
	if len(s.conns) > 0 {
		if err := s.conns[0].FlushWithContext(ctx); err != nil {
			return fmt.Errorf("round trip to the embedded nats-server: %w", err)
		}
	}
	return nil
}

// Stop shuts down in dependency order: the gateway (clients hand over their
// acks), then the services (each finishes what it accepted), then NATS and
// the database. Nothing acknowledged is lost.
func (s *System) Stop(ctx context.Context) error {
	var errs []error
	if s.gw != nil {
		errs = append(errs, s.gw.Stop(ctx))
	}
	if s.users != nil {
		errs = append(errs, s.users.Stop())
	}
	if s.groups != nil {
		errs = append(errs, s.groups.Stop())
	}
	if s.friends != nil {
		errs = append(errs, s.friends.Stop())
	}
	if s.offline != nil {
		errs = append(errs, s.offline.Stop())
	}
	// The services have answered everything they accepted; a flush sends
	// what is still buffered before the connections close.
	for _, nc := range s.conns {
		if err := nc.FlushTimeout(5 * time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, err)
		}
		nc.Close()
	}
	if s.db != nil {
		errs = append(errs, s.db.Close())
	}
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
	return errors.Join(errs...)
}

// NATSConfig is the embedded NATS server's configuration.
type NATSConfig struct {
	// Listen is a host:port to accept NATS clients on (extra gateways or
	// services); empty: in-process connections only.
	Listen string
	// Auth is what every connection must present, the system's own
	// in-process ones included: a user and password, or an nkey (the
	// public key of NkeyFile's seed). The zero value is no authentication,
	// which Validate allows only without Listen or on a loopback address.
	// A .creds file cannot be checked without a NATS operator and its
	// accounts, which the embedded server does not have: Validate refuses
	// it.
	Auth cliflag.NATSAuth
	// TLSCert and TLSKey (PEM files) make Listen a TLS listener (clients
	// need the CA that signed TLSCert, --nats-tls-ca).
	TLSCert, TLSKey string
}

// Validate refuses a listener on an address other hosts can reach without
// authentication, a .creds file and a half-given certificate.
func (c NATSConfig) Validate() error {
	if c.Auth.CredsFile != "" {
		return fmt.Errorf("--%s: the embedded NATS has no operator to check a .creds file's JWT against; "+
			"give --%s with --%s, or --%s", cliflag.NATSCreds, cliflag.NATSUser, cliflag.NATSPasswordFile, cliflag.NATSNkeyFile)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--nats-listen-tls-cert and --nats-listen-tls-key go together")
	}
	if c.Listen == "" {
		if c.TLSCert != "" {
			return errors.New("--nats-listen-tls-cert without --nats-listen")
		}
		return nil
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("--nats-listen %q: %w", c.Listen, err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return fmt.Errorf("--nats-listen %q: bad port", c.Listen)
	}
	if !c.Auth.Set() && !loopback(host) {
		return fmt.Errorf("--nats-listen %s: an address other machines can reach needs authentication: "+
			"give --%s with --%s, or --%s (the services and gateways then connect with the same flags)",
			c.Listen, cliflag.NATSUser, cliflag.NATSPasswordFile, cliflag.NATSNkeyFile)
	}
	return nil
}

// loopback reports whether host (of a listen address) is reachable from
// this machine only: localhost or a loopback IP. An empty host is every
// interface.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serverOptions turns c into the embedded server's options.
func (c NATSConfig) serverOptions() (*server.Options, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: "natter-embedded",
		NoSigs:     true,
		DontListen: c.Listen == "",
	}
	if c.Listen != "" {
		host, port, _ := net.SplitHostPort(c.Listen)
		opts.Host = host
		opts.Port, _ = strconv.Atoi(port)
		if opts.Port == 0 {
			opts.Port = server.RANDOM_PORT // nats-server reads 0 as its default, 4222
		}
	}
	switch a := c.Auth; {
	case a.User != "":
		opts.Users = []*server.User{{Username: a.User, Password: a.Password}}
	case a.NkeyFile != "":
		seed, err := os.ReadFile(a.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", cliflag.NATSNkeyFile, err)
		}
		kp, err := nkeys.ParseDecoratedNKey(seed)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", cliflag.NATSNkeyFile, err)
		}
		pub, err := kp.PublicKey()
		kp.Wipe()
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", cliflag.NATSNkeyFile, err)
		}
		opts.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	}
	if c.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: c.TLSCert, KeyFile: c.TLSKey})
		if err != nil {
			return nil, fmt.Errorf("--nats-listen-tls-cert: %w", err)
		}
		opts.TLSConfig, opts.TLS = tc, true
	}
	return opts, nil
}

// StartNATS starts an embedded nats-server. Without c.Listen it accepts only
// in-process connections.
func StartNATS(c NATSConfig, log *slog.Logger) (*server.Server, error) {
	opts, err := c.serverOptions()
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.SetLoggerV2(natsLogger{log.With("component", "nats")}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded nats: not ready after 10s")
	}
	if c.Listen != "" {
		attrs := []any{"addr", ns.Addr().String(), "auth", c.Auth.Set(), "tls", c.TLSCert != ""}
		switch {
		case !c.Auth.Set():
			log.Warn("embedded NATS listens without authentication: any process on this machine can join the bus", attrs...)
		case c.TLSCert == "" && !loopback(opts.Host):
			log.Warn("embedded NATS listens without TLS: credentials and messages cross the network in clear", attrs...)
		default:
			log.Info("embedded NATS listening", attrs...)
		}
	}
	return ns, nil
}

// natsLogger routes nats-server's log lines to slog; its Fatalf does not exit.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Tracef(format string, v ...any)  {}
