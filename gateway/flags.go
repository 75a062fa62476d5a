package gateway

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// Flags are natter-gateway's command-line flags, with DefaultConfig's
// defaults.
func Flags() []cli.Flag { return FlagsWithDefaults(DefaultConfig()) }

// FlagsWithDefaults are the gateway's flags with d's values as defaults:
// natter serve shares them with natter-gateway, with WebSocket and the web
// page on by default.
func FlagsWithDefaults(d Config) []cli.Flag {
	wsUsage := "also accept WebSocket clients on this host:port, at path " + WSPath + " (one full-dialect JSON frame per text message); " +
		"empty = no WebSocket"
	if d.WSListen != "" {
		wsUsage += "; when this default address is in use, the process runs without WebSocket (and says so) unless the flag is given"
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "listen", Value: d.Listen, EnvVars: []string{"NATTER_LISTEN"},
			Usage: "TCP address for client connections in clear (JSON frames ended by \\n or \\0; the original client); " +
				"empty = none (then give --tls-listen, --ws-listen or --wss-listen)"},
		&cli.StringFlag{Name: "tls-listen", Value: d.TLSListen, EnvVars: []string{"NATTER_TLS_LISTEN"},
			Usage: "also accept TCP clients over TLS on this host:port (the same frames and dialects as --listen); " +
				"needs --tls-cert and --tls-key; empty = none"},
		&cli.IntFlag{Name: "max-frame", Value: d.MaxFrame, EnvVars: []string{"NATTER_MAX_FRAME"},
			Usage: "largest client frame in bytes; a larger one is answered with an error and the connection closed"},
		&cli.DurationFlag{Name: "presence-ttl", Value: d.PresenceTTL, EnvVars: []string{"NATTER_PRESENCE_TTL"},
			Usage: "presence lease: if this gateway dies, its users count as offline (and can log in elsewhere) after this long"},
		&cli.IntFlag{Name: "write-limit", Value: d.WriteLimit, EnvVars: []string{"NATTER_WRITE_LIMIT"},
			Usage: "bytes queued per connection; a client that falls this far behind is disconnected (its messages wait in its inbox); at least twice --max-frame"},
		&cli.DurationFlag{Name: "write-timeout", Value: d.WriteTimeout, EnvVars: []string{"NATTER_WRITE_TIMEOUT"},
			Usage: "a client that takes none of the bytes queued for it for this long is disconnected"},
		&cli.IntFlag{Name: "event-loops", Value: d.Loops, EnvVars: []string{"NATTER_EVENT_LOOPS"},
			Usage: "event loops serving TCP connections; 0 = one per CPU"},
		&cli.DurationFlag{Name: "idle-timeout", Value: d.IdleTimeout, EnvVars: []string{"NATTER_IDLE_TIMEOUT"},
			Usage: "close connections that send nothing (not even PING) for this long, e.g. 90s (natter chat and natter bench ping every 30s); " +
				"0 = never, the default, because the original client sends no heartbeat (TCP keepalive still finds dead peers)"},
		&cli.DurationFlag{Name: "request-timeout", Value: d.RequestTimeout, EnvVars: []string{"NATTER_REQUEST_TIMEOUT"},
			Usage: "deadline for each request to a service"},
		&cli.DurationFlag{Name: "ack-interval", Value: d.AckInterval, EnvVars: []string{"NATTER_ACK_INTERVAL"},
			Usage: "how often delivery acknowledgements are sent to the offline service, batched"},
		&cli.Float64Flag{Name: "flood-rate", Value: d.FloodRate, EnvVars: []string{"NATTER_FLOOD_RATE"},
			Usage: "frames per second a connection may send on average; excess frames are refused with errno 109"},
		&cli.IntFlag{Name: "flood-burst", Value: d.FloodBurst, EnvVars: []string{"NATTER_FLOOD_BURST"},
			Usage: "frames a connection may send in a burst above --flood-rate"},
		&cli.IntFlag{Name: "max-conns", Value: d.MaxConns, EnvVars: []string{"NATTER_MAX_CONNS"},
			Usage: "client connections held at most; one more is told \"server full\" (RECONNECT, errno 118) and closed; 0 = no limit"},
		&cli.DurationFlag{Name: "drain-window", Value: d.DrainWindow, EnvVars: []string{"NATTER_DRAIN_WINDOW"},
			Usage: "on SIGTERM the gateway stops taking connections and closes the open ones spread evenly over this long " +
				"(clients resume on another gateway)"},
		&cli.DurationFlag{Name: "legacy-gap", Value: d.LegacyGap, EnvVars: []string{"NATTER_LEGACY_GAP"},
			Usage: "least time between two frames to an original (NUL-framed) client on TCP; each is also held until the " +
				"client's TCP has the one before (docs/protocol.md, \"The original client\")"},
		&cli.StringFlag{Name: "ws-listen", Value: d.WSListen, EnvVars: []string{"NATTER_WS_LISTEN"},
			Usage: wsUsage},
		&cli.StringFlag{Name: "ws-origins", Value: strings.Join(d.WSOrigins, ","), EnvVars: []string{"NATTER_WS_ORIGINS"},
			Usage: "comma-separated origins whose web pages may open a WebSocket besides the gateway's own host: host patterns " +
				"(path.Match, e.g. chat.example.com,*.example.com,localhost:*; with a scheme, e.g. https://*.example.com, matched against scheme://host); " +
				"'*' allows every origin; clients that send no Origin header (not browsers) are always accepted"},
		&cli.StringFlag{Name: "wss-listen", Value: d.WSSListen, EnvVars: []string{"NATTER_WSS_LISTEN"},
			Usage: "also accept WebSocket clients over TLS (wss://host:port" + WSPath + ", and the web page on https:// with --web) " +
				"on this host:port; needs --tls-cert and --tls-key; empty = none"},
		&cli.StringFlag{Name: "tls-cert", Value: d.TLSCert, EnvVars: []string{"NATTER_TLS_CERT"},
			Usage: "PEM certificate (chain, leaf first) of --tls-listen and --wss-listen; reloaded on SIGHUP and when the file changes"},
		&cli.StringFlag{Name: "tls-key", Value: d.TLSKey, EnvVars: []string{"NATTER_TLS_KEY"},
			Usage: "PEM private key of --tls-cert; reloaded with it (a pair that does not match is logged and the certificate in use kept)"},
		&cli.DurationFlag{Name: "tls-reload-interval", Value: d.TLSReloadInterval, EnvVars: []string{"NATTER_TLS_RELOAD_INTERVAL"},
			Usage: "how often --tls-cert and --tls-key are read to see whether they changed (then reloaded); 0 = only on SIGHUP"},
		&cli.BoolFlag{Name: "web", Value: d.Web, EnvVars: []string{"NATTER_WEB"},
			Usage: "also serve the web chat page at / on --ws-listen and --wss-listen (--web=false turns it off)"},
	}
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ConfigFromFlags reads Flags into a Config.
func ConfigFromFlags(c *cli.Context) Config {
	return Config{
		Listen:         c.String("listen"),
		MaxFrame:       c.Int("max-frame"),
		PresenceTTL:    c.Duration("presence-ttl"),
		WriteLimit:     c.Int("write-limit"),
		Loops:          c.Int("event-loops"),
		WriteTimeout:   c.Duration("write-timeout"),
		IdleTimeout:    c.Duration("idle-timeout"),
		RequestTimeout: c.Duration("request-timeout"),
		AckInterval:    c.Duration("ack-interval"),
		FloodRate:      c.Float64("flood-rate"),
		FloodBurst:     c.Int("flood-burst"),
		MaxConns:       c.Int("max-conns"),
		DrainWindow:    c.Duration("drain-window"),
		LegacyGap:      c.Duration("legacy-gap"),
		WSListen:       c.String("ws-listen"),
		WSOrigins:      splitList(c.String("ws-origins")),
		Web:            c.Bool("web"),

		TLSListen:         c.String("tls-listen"),
		WSSListen:         c.String("wss-listen"),
		TLSCert:           c.String("tls-cert"),
		TLSKey:            c.String("tls-key"),
		TLSReloadInterval: c.Duration("tls-reload-interval"),
	}
}
