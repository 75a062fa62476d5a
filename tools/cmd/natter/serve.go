package main

import (
	"context"
	"errors"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/services/friend"
	"github.com/natter-chat/natter/services/group"
	"github.com/natter-chat/natter/services/offline"
	"github.com/natter-chat/natter/services/user"
	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/tools/internal/allinone"
)

// serveStopTimeout bounds the stop of the whole system; the operational
// endpoints close after it.
const serveStopTimeout = 15 * time.Second

func serveCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "data", Value: "./natter-data", EnvVars: []string{"NATTER_DATA"},
			Usage: "directory for the SQLite database (used unless --mysql-dsn is given)"},
		&cli.StringFlag{Name: cliflag.MySQLDSN, EnvVars: []string{"NATTER_MYSQL_DSN"},
			Usage: "store in MySQL/MariaDB instead of SQLite: user:pass@tcp(host:3306)/dbname (created if missing)"},
		cliflag.MySQLDSNFileFlag(),
		&cli.IntFlag{Name: cliflag.DBConns, Value: 16, EnvVars: []string{"NATTER_DB_CONNS"},
			Usage: "MySQL connection pool size"},
		&cli.StringFlag{Name: "nats-listen", EnvVars: []string{"NATTER_NATS_LISTEN"},
			Usage: "also let the embedded NATS listen on host:port (for extra gateways or services); default: in-process only. " +
				"An address other than loopback needs --nats-user with --nats-password-file, or --nats-nkey-file"},
		&cli.StringFlag{Name: "nats-listen-tls-cert", EnvVars: []string{"NATTER_NATS_LISTEN_TLS_CERT"},
			Usage: "PEM certificate (chain) of the --nats-listen listener, which then speaks TLS only (with --nats-listen-tls-key)"},
		&cli.StringFlag{Name: "nats-listen-tls-key", EnvVars: []string{"NATTER_NATS_LISTEN_TLS_KEY"},
			Usage: "PEM private key of --nats-listen-tls-cert"},
	}
	// Whoever connects to the embedded NATS, the system's own connections
	// included, must authenticate with these (the services' and gateway's
	// flags of the same names).
	flags = append(flags, cliflag.NATSAuthFlags()...)
	flags = append(flags, gateway.FlagsWithDefaults(allinone.ServeGatewayDefaults())...)
	flags = append(flags, user.Flags()...)
	flags = append(flags, offline.Flags()...)
	flags = append(flags, friend.Flags()...)
	flags = append(flags, group.Flags()...)
	flags = append(flags, cliflag.LogFlags()...)
	flags = append(flags, cliflag.PrintConfigFlag())
	return &cli.Command{
		Name: "serve",
		Usage: "run the whole system in one process: embedded NATS, user, offline, friend and group services, one gateway " +
			"(TCP on --listen; WebSocket and the web page on --ws-listen, http://" + allinone.DefaultServeWSListen + "/ by default); " +
			"--http serves /healthz, /readyz and /metrics",
		Flags:  flags,
		Action: serve,
	}
}

func serve(c *cli.Context) (err error) {
	if done, err := cliflag.HandlePrintConfig(c); done {
		return err
	}
	dsn, err := cliflag.MySQLDSNFromFlags(c)
	if err != nil {
		return err
	}
	natsAuth, err := cliflag.NATSAuthFromFlags(c)
	if err != nil {
		return err
	}
	cfg := allinone.Config{
		Gateway:  gateway.ConfigFromFlags(c),
		User:     user.ConfigFromFlags(c),
		Offline:  offline.ConfigFromFlags(c),
		Friend:   friend.ConfigFromFlags(c),
		Group:    group.ConfigFromFlags(c),
		DataDir:  c.String("data"),
		MySQLDSN: dsn,
		DBConns:  c.Int(cliflag.DBConns),
		NATS: allinone.NATSConfig{
			Listen:  c.String("nats-listen"),
			Auth:    natsAuth,
			TLSCert: c.String("nats-listen-tls-cert"),
			TLSKey:  c.String("nats-listen-tls-key"),
		},
	}
	// The default WebSocket address is taken if it is free: a second
	// natter serve on the machine runs without WebSocket rather than fail.
	cfg.Gateway.WSBestEffort = !c.IsSet("ws-listen")
	// --ws-listen '' turns WebSocket off, and with it the page it would
	// serve (unless --web is given explicitly, which then asks for an
	// address).
	if c.IsSet("ws-listen") && cfg.Gateway.WSListen == "" && cfg.Gateway.WSSListen == "" && !c.IsSet("web") {
		cfg.Gateway.Web = false
	}
	if cfg.MySQLDSN != "" {
		cfg.User.Concurrency = cfg.DBConns
		cfg.Offline.Concurrency = cfg.DBConns
		cfg.Friend.Concurrency = cfg.DBConns
		cfg.Group.Concurrency = cfg.DBConns
	}
	var errs []error // every problem of every part at once
	for _, v := range []interface{ Validate() error }{cfg.NATS, cfg.Gateway, cfg.User, cfg.Offline, cfg.Friend, cfg.Group} {
		errs = append(errs, v.Validate())
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := cfg.Gateway.CheckTLSFiles(); err != nil {
		return err
	}
	ctx, proc, err := cliflag.StartProcess(c)
	if err != nil {
		return err
	}
	defer proc.Stop()
	log := proc.Log()
	hup := proc.Hangups() // SIGHUP reloads the TLS certificate

	o, err := cliflag.StartOps(c, log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, o.Shutdown(ctx, 5*time.Second)) }()
	started := o.Starting("system")
	cfg.Registerer = o.Registry()
	sys, err := allinone.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	sys.AddChecks(o)
	started()
	log.Info("natter serving", servingAttrs(sys, cfg)...)
	for serving := true; serving; {
		select {
		case <-ctx.Done():
			serving = false
		case <-hup:
			if !cfg.Gateway.TLS() {
				log.Info("SIGHUP: nothing to reload (no TLS listener)")
				continue
			}
			log.Info("SIGHUP: reloading the TLS certificate")
			sys.ReloadTLS() // a failure is logged; the certificate in use is kept
		}
	}
	log.Info("stopping")
	o.SetDraining()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), serveStopTimeout)
	defer cancel()
	return sys.Stop(sctx)
}

// servingAttrs are the addresses natter serves clients on, for the log.
func servingAttrs(sys *allinone.System, cfg allinone.Config) []any {
	var attrs []any
	if a := sys.Addr(); a != nil {
		attrs = append(attrs, "addr", a.String())
	}
	if a := sys.TLSAddr(); a != nil {
		attrs = append(attrs, "tls", a.String())
	}
	if a := sys.WSAddr(); a != nil {
		attrs = append(attrs, "ws", "ws://"+a.String()+gateway.WSPath)
	}
	if a := sys.WSSAddr(); a != nil {
		attrs = append(attrs, "wss", "wss://"+a.String()+gateway.WSPath)
	}
	if sys.WSAddr() != nil || sys.WSSAddr() != nil {
		attrs = append(attrs, "web", cfg.Gateway.Web)
	}
	return append(attrs, "store", storeName(cfg))
}

func storeName(cfg allinone.Config) string {
	if cfg.MySQLDSN != "" {
		return "mysql"
	}
	return "sqlite:" + cfg.DataDir
}
