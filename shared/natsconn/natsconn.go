// Package natsconn connects natter processes to NATS with the options every
// one of them wants: reconnect forever, log connection events, and, through
// Observe, count them in Prometheus metrics. Ready is a readiness check on
// a connection.
//
// Each process gets its replies on an inbox prefix of its own role
// (InboxPrefix: _INBOX.gateway, _INBOX.friend, ...), so that NATS
// permissions can let every role subscribe to its own replies and to no
// one else's. URLs are logged only through RedactURLs: a password or a
// token in a --nats URL never reaches a log line.
package natsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/shared/backoff"
)

// Connect dials url as client name. Its replies arrive under
// InboxPrefix(name). Extra options (an in-process server, credentials,
// Observe) are applied after Connect's own, so Observe counts the events
// Connect logs.
func Connect(url, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts := append([]nats.Option{
		nats.Name(name),
		nats.CustomInboxPrefix(InboxPrefix(name)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(16 << 20),
		nats.PingInterval(10 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: a deliberate close or drain
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", RedactURLs(nc.ConnectedUrl()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("nats async error", "subject", subj, "err", err)
		}),
	}, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", RedactURLs(url), err)
	}
	return nc, nil
}

// DefaultInboxPrefix is nats.go's own inbox prefix, used by a client whose
// name is no natter role.
const DefaultInboxPrefix = "_INBOX"

// InboxPrefix is the inbox prefix of the client named name: for a natter
// binary, natter-<role>, it is _INBOX.<role> (_INBOX.gateway,
// _INBOX.user, ...), so its replies arrive on _INBOX.<role>.<nuid>.<n> and
// a role's NATS permission to subscribe to _INBOX.<role>.> lets it read
// its own replies only. A name whose role would not be one subject token
// of letters, digits, - and _ gets DefaultInboxPrefix.
func InboxPrefix(name string) string {
	role := strings.TrimPrefix(name, "natter-")
	if role == "" {
		return DefaultInboxPrefix
	}
	for _, r := range role {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return DefaultInboxPrefix
		}
	}
	return DefaultInboxPrefix + "." + role
}

// RedactURLs hides the credentials in comma-separated URLs (NATS server
// lists): the password of user:password@ becomes ***, and user info
// without a password, which NATS reads as a token (nats://TOKEN@host) or
// an nkey, becomes *** as a whole. Anything else is left as it is.
func RedactURLs(urls string) string {
	if !strings.Contains(urls, "@") {
		return urls
	}
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		parts[i] = redactURL(p)
	}
	return strings.Join(parts, ",")
}

func redactURL(u string) string {
	start := 0
	if i := strings.Index(u, "://"); i >= 0 {
		start = i + len("://")
	}
	authority := u[start:]
	if end := strings.IndexAny(authority, "/?#"); end >= 0 {
		authority = authority[:end]
	}
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return u
	}
	userinfo := authority[:at]
	redacted := "***"
	if colon := strings.IndexByte(userinfo, ':'); colon >= 0 {
		redacted = userinfo[:colon] + ":***"
	}
	return u[:start] + redacted + u[start+at:]
}

// Ready is a readiness check: nil while nc is connected.
func Ready(nc *nats.Conn) func(ctx context.Context) error {
	return func(context.Context) error {
		if st := nc.Status(); st != nats.CONNECTED {
			return fmt.Errorf("nats connection %s", st)
		}
		return nil
	}
}

// Metrics counts the events of a process's NATS connections. Build it with
// NewMetrics and pass Observe(m) to Connect.
type Metrics struct {
	asyncErrors *prometheus.CounterVec
	disconnects prometheus.Counter
	reconnects  prometheus.Counter
}

// NewMetrics registers the NATS connection metrics of service on reg:
//
//   - natter_nats_async_errors_total{service, kind}: asynchronous errors
//     (kind slow_consumer, permission or other);
//   - natter_nats_disconnects_total{service}: connections lost (not
//     counting deliberate closes and drains);
//   - natter_nats_reconnects_total{service}: connections re-established.
func NewMetrics(reg prometheus.Registerer, service string) (*Metrics, error) {
	labels := prometheus.Labels{"service": service}
	m := &Metrics{
		asyncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "natter_nats_async_errors_total",
			Help:        "Asynchronous NATS errors, by kind: slow_consumer (messages dropped), permission or other.",
			ConstLabels: labels,
		}, []string{"kind"}),
		disconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "natter_nats_disconnects_total",
			Help:        "NATS connections lost (deliberate closes and drains not counted).",
			ConstLabels: labels,
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "natter_nats_reconnects_total",
			Help:        "NATS connections re-established after a loss.",
			ConstLabels: labels,
		}),
	}
	for _, c := range []prometheus.Collector{m.asyncErrors, m.disconnects, m.reconnects} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register nats metrics: %w", err)
		}
	}
	return m, nil
}

// Observe is a connection option that counts disconnects, reconnects and
// async errors in m, then calls the handlers set by the options before it
// (Connect's own logging ones). A nil m changes nothing.
func Observe(m *Metrics) nats.Option {
	return func(o *nats.Options) error {
		if m == nil {
			return nil
		}
		disconnected, reconnected, asyncErr := o.DisconnectedErrCB, o.ReconnectedCB, o.AsyncErrorCB
		o.DisconnectedErrCB = func(nc *nats.Conn, err error) {
			if err != nil {
				m.disconnects.Inc()
			}
			if disconnected != nil {
				disconnected(nc, err)
			}
		}
		o.ReconnectedCB = func(nc *nats.Conn) {
			m.reconnects.Inc()
			if reconnected != nil {
				reconnected(nc)
			}
		}
		o.AsyncErrorCB = func(nc *nats.Conn, sub *nats.Subscription, err error) {
			m.asyncErrors.WithLabelValues(asyncKind(err)).Inc()
			if asyncErr != nil {
				asyncErr(nc, sub, err)
			}
		}
		return nil
	}
}

func asyncKind(err error) string {
	switch {
	case errors.Is(err, nats.ErrSlowConsumer):
		return "slow_consumer"
	case errors.Is(err, nats.ErrPermissionViolation):
		return "permission"
	}
	return "other"
}

// ConnectRetry is Connect, tried again with growing pauses while no NATS
// server can be reached, until ctx ends: a process may start before NATS
// does (a whole cluster booting, a Kubernetes rollout). A refused
// authorization or a bad option fails at once.
func ConnectRetry(ctx context.Context, url, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	b := backoff.New(250*time.Millisecond, 5*time.Second)
	for {
		nc, err := Connect(url, name, log, extra...)
		if err == nil || !errors.Is(err, nats.ErrNoServers) {
			return nc, err
		}
		pause := b.Next()
		log.Warn("nats not reachable yet; retrying", "url", RedactURLs(url), "retry_in", pause, "err", err)
		if !backoff.Sleep(ctx, pause) {
			return nil, fmt.Errorf("%w (gave up: %v)", err, context.Cause(ctx))
		}
	}
}
