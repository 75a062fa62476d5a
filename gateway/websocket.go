package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/natter-chat/natter/gateway/internal/netconn"
	"github.com/natter-chat/natter/gateway/internal/session"
	"github.com/natter-chat/natter/gateway/internal/webui"
	"github.com/natter-chat/natter/gateway/wsconn"
)

// WSPath is where the WebSocket endpoint is served.
const WSPath = wsconn.Path

// Client sockets' TCP keepalive: the first probe after keepAliveIdle plus
// up to keepAliveSpread of idleness, then every keepAliveInterval, dead
// after keepAliveCount unanswered: dead peers are found in 60-75 s.
const (
	keepAliveIdle     = 30 * time.Second
	keepAliveSpread   = 15 * time.Second
	keepAliveInterval = 10 * time.Second
	keepAliveCount    = 3
)

// clientKeepAlive is the TCP keepalive of a client socket, its idle time
// drawn anew for each call. Connections that came together (the logins of
// a resume storm) would otherwise probe together, every 10 s: 100,000 idle
// connections on one machine sent their probes in bursts that overflowed
// the kernel's per-CPU receive backlog (net.core.netdev_max_backlog, 1,000
// packets) on loopback, and connections whose probes were dropped three
// times in a row were aborted ("read: connection timed out").
func clientKeepAlive() net.KeepAliveConfig {
	return net.KeepAliveConfig{Enable: true, Idle: keepAliveIdle + rand.N(keepAliveSpread),
		Interval: keepAliveInterval, Count: keepAliveCount}
}

// wsServer is the gateway's HTTP server on Config.WSListen (or, with TLS,
// Config.WSSListen): WebSocket
// clients at /ws, each served by the hub exactly as a TCP connection is
// (wsconn turns messages into frames), and with Config.Web the web page at
// /. Nothing else is served there (health and metrics are on --http).
type wsServer struct {
	hub      *session.Hub
	m        *session.Metrics
	log      *slog.Logger
	maxFrame int
	accept   websocket.AcceptOptions
	ln       net.Listener
	tls      bool // https and wss
	srv      *http.Server

	mu      sync.Mutex
	closing bool           // draining or stopping: handshakes are refused
	conns   sync.WaitGroup // upgraded connections, until their close handshake ends
}

// keepAliveListener gives each connection it accepts its own keepalive
// (clientKeepAlive).
type keepAliveListener struct{ net.Listener }

func (l keepAliveListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetKeepAliveConfig(clientKeepAlive())
	}
	return c, err
}

// listenWS listens on addr, with TLS when tlsConf is not nil (the HTTP
// server runs each connection's handshake).
func listenWS(addr string, tlsConf *tls.Config, cfg Config, hub *session.Hub, m *session.Metrics, log *slog.Logger) (*wsServer, error) {
	lc := net.ListenConfig{KeepAlive: -1} // set per connection (keepAliveListener)
	raw, err := lc.Listen(context.Background(), "tcp", addr)
	name := "websocket"
	if tlsConf != nil {
		name = "wss"
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s (%s): %w", addr, name, err)
	}
	var ln net.Listener = netconn.NewListener(keepAliveListener{raw}, name, log)
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	w := &wsServer{
		hub:      hub,
		m:        m,
		log:      log,
		maxFrame: cfg.MaxFrame,
		// Compression stays off (the default): frames are small, and
		// per-message deflate costs memory on every connection.
		accept: websocket.AcceptOptions{OriginPatterns: cfg.WSOrigins},
		ln:     ln,
		tls:    tlsConf != nil,
	}
	mux := http.NewServeMux()
	mux.HandleFunc(WSPath, w.serveWS)
	if cfg.Web {
		mux.Handle("/", webui.Handler())
	}
	w.srv = &http.Server{
		Handler: mux,
		// Page requests and handshakes are small and quick; an upgraded
		// connection has its deadlines cleared by the hijack and lives by
		// the session's own limits (idle timeout, write timeout).
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return w, nil
}

// serve runs the HTTP server until stopAccepting or shutdown.
func (w *wsServer) serve() {
	err := w.srv.Serve(w.ln)
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		w.log.Error("websocket server", "err", err)
	}
}

// serveWS upgrades a request to a WebSocket and serves it as a client
// connection until the session ends and the close handshake is over.
func (w *wsServer) serveWS(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		w.m.UpgradeRefused(session.RefusedDraining)
		rw.Header().Set("Connection", "close")
		http.Error(rw, "gateway is draining; reconnect", http.StatusServiceUnavailable)
		return
	}
	w.conns.Add(1)
	w.mu.Unlock()
	defer w.conns.Done()

	rec := &statusRecorder{ResponseWriter: rw}
	ws, err := websocket.Accept(rec, r, &w.accept)
	if err != nil {
		reason := session.RefusedRequest
		if rec.code == http.StatusForbidden {
			reason = session.RefusedOrigin
		}
		w.m.UpgradeRefused(reason)
		w.log.Debug("websocket handshake refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "status", rec.code, "err", err)
		return
	}
	var local net.Addr = wsconn.Addr("")
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = wsconn.Addr(a.String())
	}
	c := wsconn.New(ws, local, wsconn.Addr(r.RemoteAddr), w.maxFrame)
	w.hub.Serve(c, session.WebSocket) // closes c when the session ends
	<-c.Done()
}

// stopAccepting refuses new handshakes and page requests: the listener
// closes, requests on open keep-alive connections get 503 for /ws.
func (w *wsServer) stopAccepting() {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	w.srv.SetKeepAlivesEnabled(false)
	w.ln.Close()
}

// shutdown waits for page requests under way and for the close handshakes
// of the WebSocket connections (the hub has closed them), until ctx ends.
func (w *wsServer) shutdown(ctx context.Context) {
	w.stopAccepting()
	if err := w.srv.Shutdown(ctx); err != nil {
		w.srv.Close()
	}
	done := make(chan struct{})
	go func() { w.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		w.log.Warn("websocket connections did not finish closing before the shutdown deadline")
	}
}

// statusRecorder remembers the status a handshake was refused with;
// coder/websocket reaches the http.Hijacker through Unwrap.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
