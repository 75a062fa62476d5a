// Package gateway is natter's stateless front end: it holds client
// connections (TCP, and WebSocket with Config.WSListen; each also over TLS
// with Config.TLSListen and Config.WSSListen), speaks the wire
// protocol and routes by NATS subject. It never
// touches the database. Any number of gateways run side by side; each keeps
// a presence lease with the user service, so if one is killed its users can
// log in again elsewhere once the lease runs out. A gateway taken out of
// service drains (Drain): it takes no new connections and moves its clients
// to the other gateways a few at a time.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/gateway/internal/netconn"
	"github.com/natter-chat/natter/gateway/internal/session"
	"github.com/natter-chat/natter/gateway/internal/tlsreload"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/backoff"
	"github.com/natter-chat/natter/shared/subject"
	"github.com/natter-chat/natter/shared/wire"
)

// Config configures a gateway.
type Config struct {
	Listen         string        // TCP address for clients; empty: no plain TCP listener
	MaxFrame       int           // largest client frame in bytes
	PresenceTTL    time.Duration // lease: a killed gateway's users count as offline after this
	WriteLimit     int           // bytes queued per connection before it is cut off as slow
	WriteTimeout   time.Duration
	IdleTimeout    time.Duration // 0: never close idle connections (TCP keepalive still detects dead peers)
	RequestTimeout time.Duration
	AckInterval    time.Duration
	FloodRate      float64
	FloodBurst     int
	MaxConns       int           // connections held at most; more are told "server full" and closed; 0 = no limit
	DrainWindow    time.Duration // Drain closes the connections spread evenly over this long
	Loops          int           // event loops for TCP connections; 0: one per CPU
	LegacyGap      time.Duration // least time between two records to an original client on TCP

	// WSListen is the address of the WebSocket endpoint (path /ws, one
	// full-dialect frame per text message); empty: no WebSocket.
	WSListen string
	// WSOrigins are the origins, besides the gateway's own, whose pages may
	// open a WebSocket: host patterns as coder/websocket's
	// AcceptOptions.OriginPatterns (path.Match, case-insensitive; with
	// "://", matched against scheme://host). Clients that send no Origin
	// header (anything but a browser) are not checked.
	WSOrigins []string
	// Web serves the web chat page (gateway/internal/webui) at / on
	// WSListen.
	Web bool
	// WSBestEffort makes WSListen a default rather than a demand: if the
	// address is in use, the gateway runs without WebSocket (and the web
	// page) and says so in its log. natter serve sets it when --ws-listen
	// was not given, so a second natter serve on one machine still starts.
	WSBestEffort bool

	// TLSListen is the address of the TCP listener with TLS (the same
	// frames and dialects as Listen); empty: none.
	TLSListen string
	// WSSListen is the address of the WebSocket endpoint (and, with Web,
	// the page) over TLS: wss:// and https://; empty: none.
	WSSListen string
	// TLSCert and TLSKey are the PEM files of the TLS listeners'
	// certificate (chain) and key; reloaded on ReloadTLS and, every
	// TLSReloadInterval, when their content changed.
	TLSCert, TLSKey string
	// TLSReloadInterval is how often the certificate files are read to see
	// whether they changed; 0: only ReloadTLS (SIGHUP) reloads them.
	TLSReloadInterval time.Duration

	// Registerer receives the gateway's metrics (natter_gateway_*); nil
	// counts them into a private registry.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults the binaries use.
func DefaultConfig() Config {
	return Config{
		Listen:         "127.0.0.1:6000",
		MaxFrame:       wire.DefaultMaxFrame,
		PresenceTTL:    10 * time.Second,
		WriteLimit:     512 << 10,
		WriteTimeout:   10 * time.Second,
		RequestTimeout: 5 * time.Second,
		AckInterval:    20 * time.Millisecond,
		FloodRate:      200,
		FloodBurst:     400,
		DrainWindow:    10 * time.Second,
		LegacyGap:      time.Millisecond,

		TLSReloadInterval: 5 * time.Second,
	}
}

// TLS reports whether the configuration has a TLS listener.
func (c Config) TLS() bool { return c.TLSListen != "" || c.WSSListen != "" }

// Validate reports every problem of the configuration, each naming its
// flag.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Listen == "" && c.WSListen == "" && !c.TLS() {
		bad("no client listener: give --listen, --tls-listen, --ws-listen or --wss-listen")
	}
	if c.TLS() && (c.TLSCert == "" || c.TLSKey == "") {
		bad("--tls-listen and --wss-listen need a certificate: give --tls-cert and --tls-key")
	} else if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("--tls-cert and --tls-key go together: give both")
	}
	if c.TLSCert != "" && !c.TLS() {
		bad("--tls-cert and --tls-key are for the TLS listeners: give --tls-listen or --wss-listen")
	}
	if c.TLSReloadInterval < 0 {
		bad("--tls-reload-interval %s: want 0 (on SIGHUP only) or more", c.TLSReloadInterval)
	}
	if c.MaxFrame < 1024 {
		bad("--max-frame %d: want at least 1024 bytes", c.MaxFrame)
	}
	if c.PresenceTTL < 2*time.Second {
		bad("--presence-ttl %s: want at least 2s", c.PresenceTTL)
	}
	if c.WriteLimit < 2*c.MaxFrame {
		bad("--write-limit %d: want at least twice --max-frame (%d bytes)", c.WriteLimit, 2*c.MaxFrame)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"write-timeout", c.WriteTimeout}, {"request-timeout", c.RequestTimeout}, {"ack-interval", c.AckInterval}} {
		if d.v <= 0 {
			bad("--%s %s: want more than 0", d.flag, d.v)
		}
	}
	if c.FloodRate <= 0 {
		bad("--flood-rate %v: want more than 0", c.FloodRate)
	}
	if c.FloodBurst < 1 {
		bad("--flood-burst %d: want at least 1", c.FloodBurst)
	}
	if c.IdleTimeout < 0 {
		bad("--idle-timeout %s: want 0 (never) or more", c.IdleTimeout)
	}
	if c.MaxConns < 0 {
		bad("--max-conns %d: want 0 (no limit) or more", c.MaxConns)
	}
	if c.LegacyGap < 0 || c.LegacyGap > time.Second {
		bad("--legacy-gap %s: want 0 to 1s", c.LegacyGap)
	}
	if c.DrainWindow < 0 {
		bad("--drain-window %s: want 0 or more", c.DrainWindow)
	}
	if c.Web && c.WSListen == "" && c.WSSListen == "" {
		bad("the web page is served on the WebSocket addresses: --web needs --ws-listen or --wss-listen")
	}
	if err := distinctAddrs(map[string]string{"listen": c.Listen, "tls-listen": c.TLSListen,
		"ws-listen": c.WSListen, "wss-listen": c.WSSListen}); err != nil {
		errs = append(errs, err)
	}
	for _, p := range c.WSOrigins {
		if _, err := path.Match(p, ""); err != nil || strings.TrimSpace(p) != p || p == "" {
			bad("--ws-origins pattern %q: want a host pattern such as chat.example.com, *.example.com or https://*.example.com", p)
		}
	}
	return errors.Join(errs...)
}

// CheckTLSFiles loads the certificate and key files of a configuration
// with TLS listeners, so that a bad pair is a startup error before
// anything else starts. Start loads them again.
func (c Config) CheckTLSFiles() error {
	if !c.TLS() {
		return nil
	}
	if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", c.TLSCert, c.TLSKey, err)
	}
	return nil
}

// distinctAddrs refuses two listeners on one address (a port 0 is a new
// port each time).
func distinctAddrs(addrs map[string]string) error {
	seen := map[string]string{}
	for _, flag := range []string{"listen", "tls-listen", "ws-listen", "wss-listen"} {
		a := addrs[flag]
		if a == "" || strings.HasSuffix(a, ":0") {
			continue
		}
		if other, ok := seen[a]; ok {
			return fmt.Errorf("--%s and --%s are both %s: give each listener an address of its own", other, flag, a)
		}
		seen[a] = flag
	}
	return nil
}

// ErrDraining is what Ready reports once Drain or Stop has begun.
var ErrDraining = errors.New("gateway is draining")

// Gateway is a running gateway.
type Gateway struct {
	cfg Config
	nc  *nats.Conn
	log *slog.Logger
	id  string
	m   *session.Metrics
	hub *session.Hub
	ln  net.Listener // nil without Config.Listen
	tln net.Listener // the TCP listener of TLS connections; nil without Config.TLSListen
	ws  *wsServer    // nil without Config.WSListen
	wss *wsServer    // nil without Config.WSSListen
	wg  sync.WaitGroup

	certs   *tlsreload.Reloader // nil without a TLS listener
	tlsConf *tls.Config         // the TLS listener's
	// tlsCtx ends with stopAccepting: TLS handshakes under way are cut.
	tlsCtx    context.Context
	tlsCancel context.CancelFunc

	draining  atomic.Bool  // Drain or Stop has begun
	leaseAt   atomic.Int64 // Unix ns of the last presence lease renewal the user service accepted
	drainOnce sync.Once

	stopBeat  chan struct{} // stops the lease and reconcile loops
	reconcile chan struct{} // a NATS reconnect asks for a session check
	stopOnce  sync.Once
	stopErr   error
}

// Start registers the gateway's presence lease (waiting for the user
// service if it is not up yet), listens and starts accepting clients.
func Start(ctx context.Context, nc *nats.Conn, cfg Config, log *slog.Logger) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, nc: nc, id: uuid.NewString()}
	g.log = log.With("gateway_id", g.id[:8])
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := session.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	g.m = m
	if err := g.beatUntilAccepted(ctx); err != nil {
		return nil, err
	}
	if cfg.TLS() {
		if g.certs, err = tlsreload.New(cfg.TLSCert, cfg.TLSKey, g.log); err != nil {
			return nil, err
		}
		g.tlsConf = g.certs.ServerConfig()
	}
	g.tlsCtx, g.tlsCancel = context.WithCancel(context.Background())
	if err := g.listen(); err != nil {
		g.closeListeners()
		return nil, err
	}
	hub, err := session.NewHub(nc, session.Options{
		GatewayID:      g.id,
		MaxFrame:       cfg.MaxFrame,
		WriteLimit:     cfg.WriteLimit,
		WriteTimeout:   cfg.WriteTimeout,
		IdleTimeout:    cfg.IdleTimeout,
		RequestTimeout: cfg.RequestTimeout,
		AckInterval:    cfg.AckInterval,
		FloodRate:      cfg.FloodRate,
		FloodBurst:     cfg.FloodBurst,
		ReplayPage:     200,
		LegacyGap:      cfg.LegacyGap,
		MaxConns:       cfg.MaxConns,
		Loops:          cfg.Loops,
		Metrics:        m,
	}, g.log)
	if err != nil {
		g.closeListeners()
		return nil, err
	}
	g.hub = hub
	if cfg.WSListen != "" {
		g.ws, err = listenWS(cfg.WSListen, nil, cfg, hub, m, g.log)
		switch {
		case err != nil && cfg.WSBestEffort && errors.Is(err, syscall.EADDRINUSE):
			g.log.Warn("websocket address in use: running without WebSocket and the web page (set --ws-listen)",
				"addr", cfg.WSListen)
		case err != nil:
			g.closeListeners()
			hub.Close(ctx)
			return nil, err
		}
	}
	if cfg.WSSListen != "" {
		// HTTP/1.1 only: a WebSocket handshake is an HTTP/1.1 upgrade.
		if g.wss, err = listenWS(cfg.WSSListen, g.certs.ServerConfig("http/1.1"), cfg, hub, m, g.log); err != nil {
			g.closeListeners()
			hub.Close(ctx)
			return nil, err
		}
	}
	for _, w := range []*wsServer{g.ws, g.wss} {
		if w == nil {
			continue
		}
		g.wg.Add(1)
		go func() { defer g.wg.Done(); w.serve() }()
		g.log.Info("gateway listening for websocket clients", "addr", w.ln.Addr().String(), "path", WSPath,
			"web", cfg.Web, "tls", w.tls)
	}
	g.reconcile = make(chan struct{}, 1)
	g.watchNATS()
	g.stopBeat = make(chan struct{})
	g.wg.Add(2)
	go func() { defer g.wg.Done(); g.beatLoop(g.stopBeat) }()
	go func() { defer g.wg.Done(); g.reconcileLoop(g.stopBeat) }()
	if g.ln != nil {
		g.wg.Add(1)
		go func() { defer g.wg.Done(); g.acceptLoop(g.ln, false) }()
		g.log.Info("gateway listening", "addr", g.ln.Addr().String())
	}
	if g.tln != nil {
		g.wg.Add(1)
		go func() { defer g.wg.Done(); g.acceptLoop(g.tln, true) }()
		g.log.Info("gateway listening for TLS clients", "addr", g.tln.Addr().String())
	}
	if g.certs != nil && cfg.TLSReloadInterval > 0 {
		g.wg.Add(1)
		go func() { defer g.wg.Done(); g.certs.Watch(g.stopBeat, cfg.TLSReloadInterval) }()
	}
	return g, nil
}

// listen opens the TCP listeners (plain and TLS); the WebSocket ones are
// opened by listenWS.
func (g *Gateway) listen() error {
	if g.cfg.Listen != "" {
		ln, err := net.Listen("tcp", g.cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen %s: %w", g.cfg.Listen, err)
		}
		g.ln = netconn.NewListener(ln, "tcp", g.log)
	}
	if g.cfg.TLSListen != "" {
		ln, err := net.Listen("tcp", g.cfg.TLSListen)
		if err != nil {
			return fmt.Errorf("listen %s (tls): %w", g.cfg.TLSListen, err)
		}
		g.tln = netconn.NewListener(ln, "tls", g.log)
	}
	return nil
}

// closeListeners closes the TCP listeners that are open (a failed Start).
func (g *Gateway) closeListeners() {
	for _, ln := range []net.Listener{g.ln, g.tln} {
		if ln != nil {
			ln.Close()
		}
	}
	for _, w := range []*wsServer{g.ws, g.wss} {
		if w != nil {
			w.ln.Close()
		}
	}
	if g.tlsCancel != nil {
		g.tlsCancel()
	}
}

// watchNATS makes every live session look for messages whose push was lost:
// NATS drops what is published to a connection while it reconnects, and a
// subscription that falls behind drops messages as a slow consumer. After a
// reconnect it also has the sessions reconciled (a kick may have been lost).
// The handlers installed by natsconn keep running.
func (g *Gateway) watchNATS() {
	prevReconnect := g.nc.Opts.ReconnectedCB
	g.nc.SetReconnectHandler(func(nc *nats.Conn) {
		if prevReconnect != nil {
			prevReconnect(nc)
		}
		g.hub.Reconnected()
		select { // reconcileLoop checks the sessions
		case g.reconcile <- struct{}{}:
		default:
		}
	})
	prevErr := g.nc.Opts.AsyncErrorCB
	g.nc.SetErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		if prevErr != nil {
			prevErr(nc, sub, err)
		}
		// A slow consumer on the user subscriptions lost pushes; one on the
		// requester's inbox lost replies, which are sent again anyway.
		if errors.Is(err, nats.ErrSlowConsumer) && (sub == nil || sub.Subject != g.hub.Inbox()) {
			g.hub.Resync()
		}
	})
}

// Addr is the address of the plain TCP listener, nil without
// Config.Listen.
func (g *Gateway) Addr() net.Addr {
	if g.ln == nil {
		return nil
	}
	return g.ln.Addr()
}

// TLSAddr is the address of the TCP listener with TLS, nil without
// Config.TLSListen.
func (g *Gateway) TLSAddr() net.Addr {
	if g.tln == nil {
		return nil
	}
	return g.tln.Addr()
}

// WSSAddr is the address of the WebSocket endpoint over TLS
// (wss://WSSAddr/ws), nil without Config.WSSListen.
func (g *Gateway) WSSAddr() net.Addr {
	if g.wss == nil {
		return nil
	}
	return g.wss.ln.Addr()
}

// ReloadTLS reads the certificate files again (natter-gateway and natter
// serve call it on SIGHUP): new TLS connections get the new certificate,
// open ones keep theirs. A pair that does not load is logged and returned,
// and the certificate in use is kept. Without a TLS listener it does
// nothing.
func (g *Gateway) ReloadTLS() error {
	if g.certs == nil {
		return nil
	}
	return g.certs.Reload()
}

// WSAddr is the address of the WebSocket endpoint (ws://WSAddr/ws), nil
// without Config.WSListen.
func (g *Gateway) WSAddr() net.Addr {
	if g.ws == nil {
		return nil
	}
	return g.ws.ln.Addr()
}

// stopAccepting closes the listeners: no new TCP connections, no new
// WebSocket handshakes.
func (g *Gateway) stopAccepting() {
	for _, ln := range []net.Listener{g.ln, g.tln} {
		if ln != nil {
			ln.Close()
		}
	}
	g.tlsCancel()
	for _, w := range []*wsServer{g.ws, g.wss} {
		if w != nil {
			w.stopAccepting()
		}
	}
}

// tlsHandshakeTimeout bounds a TLS handshake on the TLS listener.
const tlsHandshakeTimeout = 10 * time.Second

// acceptLoop accepts clients until the listener closes (a failed accept,
// e.g. out of file descriptors, is retried and logged by
// netconn.Listener); the hub owns and waits for the connections'
// goroutines. On the TLS listener each connection's handshake runs on a
// goroutine of its own, then the connection is served like any other:
// the session does not know it is encrypted.
func (g *Gateway) acceptLoop(ln net.Listener, secure bool) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetKeepAliveConfig(clientKeepAlive())
		}
		if !secure {
			go g.hub.Serve(c, session.TCP)
			continue
		}
		g.wg.Add(1)
		go func() { defer g.wg.Done(); g.serveTLS(c) }()
	}
}

// serveTLS runs the TLS handshake and serves the connection until it ends.
func (g *Gateway) serveTLS(c net.Conn) {
	tc := tls.Server(c, g.tlsConf)
	ctx, cancel := context.WithTimeout(g.tlsCtx, tlsHandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		// Scanners and clients that do not trust the certificate end here:
		// not worth more than a debug line each.
		g.log.Debug("tls handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	g.hub.Serve(tc, session.TCP)
}

// beat renews the presence lease and reports whether it was new.
func (g *Gateway) beat(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.RequestTimeout)
	defer cancel()
	var resp api.GatewayBeatResponse
	sent := time.Now()
	err := g.m.Call(ctx, g.nc, subject.UserGatewayBeat,
		api.GatewayBeat{GatewayID: g.id, TTLMillis: g.cfg.PresenceTTL.Milliseconds()}, &resp)
	if err == nil {
		g.leaseAt.Store(sent.UnixNano())
	}
	return resp.New, err
}

// Ready reports whether the gateway should get new clients: its NATS
// connection is up, the user service renewed its presence lease within the
// lease's TTL, and it is not draining or stopped (ErrDraining).
func (g *Gateway) Ready(context.Context) error {
	if g.draining.Load() {
		return ErrDraining
	}
	if st := g.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("nats connection %s", st)
	}
	if age := time.Since(time.Unix(0, g.leaseAt.Load())); age > g.cfg.PresenceTTL {
		return fmt.Errorf("presence lease not renewed for %s", age.Round(time.Millisecond))
	}
	return nil
}

func (g *Gateway) beatUntilAccepted(ctx context.Context) error {
	b := backoff.New(100*time.Millisecond, 2*time.Second)
	for {
		_, err := g.beat(ctx)
		if err == nil {
			return nil
		}
		g.log.Warn("user service not reachable yet; retrying", "err", err)
		if !b.Wait(ctx, 0) {
			return fmt.Errorf("register presence lease: %w", err)
		}
	}
}

func (g *Gateway) beatLoop(stop <-chan struct{}) {
	t := time.NewTicker(g.cfg.PresenceTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			renewedAfterExpiry, err := g.beat(context.Background())
			switch {
			case err != nil:
				g.log.Warn("presence lease renewal failed", "err", err)
			case renewedAfterExpiry:
				g.log.Warn("presence lease had expired; the user service ended this gateway's sessions: closing them")
				g.hub.ExpireSessions()
			}
		}
	}
}

// reconcileLoop checks the sessions after each NATS reconnect, retrying
// while the user service does not answer.
func (g *Gateway) reconcileLoop(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-g.reconcile:
		}
		b := backoff.New(100*time.Millisecond, 5*time.Second)
		for {
			err := g.hub.Reconcile(context.Background())
			if err == nil {
				break
			}
			g.log.Warn("session reconciliation failed; retrying", "err", err)
			select {
			case <-stop:
				return
			case <-time.After(b.Next()):
			}
		}
	}
}

// Drain takes the gateway out of service gently (lame duck), then does
// what Stop does. From its start Ready fails and the listeners are closed
// (new connections and WebSocket handshakes are refused); the open connections are closed one by
// one, spread evenly over Config.DrainWindow, each the way a client's
// disconnect is: what is queued for it is written, then full-dialect
// clients get a Reconnect frame (errno 113), its acks are handed over and
// its session released, so the client logs in on another gateway with its
// resume token at once. Messages on their way either reach the client
// before the close or wait in its inbox for that login. The window is
// shortened to fit in three quarters of ctx's deadline, if it has one.
func (g *Gateway) Drain(ctx context.Context) error {
	g.drainOnce.Do(func() {
		g.draining.Store(true)
		g.stopAccepting()
		window := g.cfg.DrainWindow
		if dl, ok := ctx.Deadline(); ok {
			window = max(0, min(window, time.Until(dl)*3/4))
		}
		g.hub.Drain(ctx, window)
		g.m.SetDraining(false)
	})
	return g.Stop(ctx)
}

// Stop stops accepting, closes every connection at once (full-dialect
// clients are told to reconnect; each session hands over its acks), and
// ends the gateway's sessions in the user service so its users can log in
// elsewhere at once. Other gateways' users are not affected. Stop may be
// called more than once.
func (g *Gateway) Stop(ctx context.Context) error {
	g.stopOnce.Do(func() { g.stopErr = g.stop(ctx) })
	return g.stopErr
}

func (g *Gateway) stop(ctx context.Context) error {
	g.draining.Store(true)
	g.stopAccepting()
	g.hub.Close(ctx)
	for _, w := range []*wsServer{g.ws, g.wss} {
		if w != nil {
			w.shutdown(ctx)
		}
	}
	close(g.stopBeat)
	g.wg.Wait()
	rctx, cancel := context.WithTimeout(ctx, g.cfg.RequestTimeout)
	defer cancel()
	if err := g.m.Call(rctx, g.nc, subject.UserGatewayLeave, api.GatewayLeave{GatewayID: g.id}, nil); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	g.log.Info("gateway stopped")
	return nil
}
