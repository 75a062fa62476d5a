package session

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/gateway/internal/netconn"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/subject"
	"github.com/natter-chat/natter/shared/wire"
)

// Metrics are a gateway's Prometheus metrics, all named natter_gateway_*.
// Every label has a fixed set of values: msgids are named from shared/wire
// (anything else is "other"), close reasons and login results are the
// constants below, services and endpoints come from shared/subject. The NATS
// connection's own events (disconnects, reconnects, slow consumers) are
// counted where the connection is made (natsconn.Observe).
type Metrics struct {
	conns       prometheus.Gauge
	sessions    prometheus.Gauge
	draining    prometheus.Gauge
	accepted    prometheus.Counter
	tconns      [numTransports]prometheus.Gauge   // conns by transport
	taccepted   [numTransports]prometheus.Counter // accepted by transport
	wsRefused   [numUpgradeRefusals]prometheus.Counter
	closed      [netconn.NumReasons]prometheus.Counter
	logins      [2][numLoginResults]prometheus.Counter // [token][result]
	framesIn    [numMsgIDs]prometheus.Counter
	framesOut   [numMsgIDs]prometheus.Counter
	pushed      prometheus.Counter
	acks        prometheus.Counter
	latency     prometheus.Histogram
	rateLimited prometheus.Counter

	reqSeconds *prometheus.HistogramVec
	reqErrors  *prometheus.CounterVec
	endpoints  map[string]endpointMetrics // by subject; read-only after NewMetrics
}

type endpointMetrics struct {
	service, endpoint string
	seconds           prometheus.Observer
}

// Transport is how a client connection reached the gateway.
type Transport uint8

// Transports.
const (
	TCP       Transport = iota // JSON frames ended by '\n' or NUL
	WebSocket                  // one full-dialect frame per text message (gateway/wsconn)
	numTransports
)

var transportNames = [numTransports]string{TCP: "tcp", WebSocket: "websocket"}

// UpgradeRefusal is why a WebSocket handshake was refused.
type UpgradeRefusal uint8

// Refusals of a WebSocket handshake.
const (
	RefusedOrigin   UpgradeRefusal = iota // the page's origin is not allowed (HTTP 403)
	RefusedDraining                       // the gateway is draining or stopping (HTTP 503)
	RefusedRequest                        // not a valid WebSocket handshake
	numUpgradeRefusals
)

var upgradeRefusalNames = [numUpgradeRefusals]string{RefusedOrigin: "origin", RefusedDraining: "draining", RefusedRequest: "bad_request"}

type loginResult uint8

const (
	loginOK        loginResult = iota
	loginInvalid               // wrong id, password or token; a malformed LOGIN
	loginInUse                 // the reject policy refused a second session
	loginThrottled             // refused: too many failed logins of the account or from the address
	loginError                 // a service failed or the login was replaced while under way
	numLoginResults
)

var loginResultNames = [numLoginResults]string{"ok", "invalid", "in_use", "throttled", "error"}

// numMsgIDs covers the msgids named in shared/wire; index 0 counts the rest.
const numMsgIDs = int(wire.MaxMsgID) + 1

// msgIndex is m's slot in the per-msgid counters (0: not a known msgid).
func msgIndex(m wire.MsgID) int {
	if m > 0 && int(m) < numMsgIDs {
		return int(m)
	}
	return 0
}

// meteredSubjects are the service requests a gateway makes.
var meteredSubjects = []string{
	subject.UserRegister, subject.UserLogin, subject.UserLogouts, subject.UserLookup,
	subject.UserGatewayBeat, subject.UserGatewayLeave, subject.UserSessions,
	subject.OfflineStore, subject.OfflineStoreMany, subject.OfflineFetch, subject.OfflineAck,
	subject.FriendAdd, subject.FriendRemove, subject.FriendList,
	subject.GroupCreate, subject.GroupJoin, subject.GroupLeave, subject.GroupMine, subject.GroupMembers, subject.GroupSend,
}

// NewMetrics creates the gateway's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	const ns, sub = "natter", "gateway"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &Metrics{
		conns:    gauge("connections", "Client connections open."),
		sessions: gauge("sessions", "Client connections logged in."),
		draining: gauge("draining", "1 while the gateway drains its connections (lame duck), else 0."),
		accepted: counter("connections_accepted_total", "Client connections accepted (including those refused at --max-conns)."),
		pushed:   counter("messages_pushed_total", "Chat messages written to client sockets (live, replayed, and in legacy LOGIN_ACK offlinemsg)."),
		acks:     counter("acks_forwarded_total", "Per-user delivery acknowledgements handed to the offline service (batched)."),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "delivery_latency_seconds",
			Help: "Live chat pushes: time from the offline service's store (the timestamp of the message's UUIDv7 mid, millisecond " +
				"resolution, the offline service's clock) to the write to the recipient's socket. Replays from the inbox are not observed.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
		rateLimited: counter("frames_rate_limited_total", "Client frames dropped and answered with errno 109 (over --flood-rate/--flood-burst)."),
		reqSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "service_request_seconds",
			Help:    "NATS requests the gateway makes to services, by service and endpoint, failed ones included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15)}, []string{"service", "endpoint"}),
		reqErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "service_request_errors_total",
			Help: "Failed service requests by service, endpoint and code: unavailable (no answer in time, no responders), " +
				"the service's error code (bad_login, busy, internal, ...) or other."}, []string{"service", "endpoint", "code"}),
		endpoints: map[string]endpointMetrics{},
	}
	tconns := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "transport_connections",
		Help: "Client connections open, by transport: tcp, websocket (they add up to natter_gateway_connections)."}, []string{"transport"})
	taccepted := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "transport_connections_accepted_total",
		Help: "Client connections accepted, by transport: tcp, websocket (upgraded connections; a refused handshake is " +
			"natter_gateway_websocket_upgrades_refused_total), including those refused at --max-conns."}, []string{"transport"})
	for t := range numTransports {
		m.tconns[t] = tconns.WithLabelValues(transportNames[t])
		m.taccepted[t] = taccepted.WithLabelValues(transportNames[t])
	}
	wsRefused := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "websocket_upgrades_refused_total",
		Help: "WebSocket handshakes refused, by reason: origin (not allowed by --ws-origins, HTTP 403), draining (HTTP 503), " +
			"bad_request (not a valid WebSocket handshake)."}, []string{"reason"})
	for r := range numUpgradeRefusals {
		m.wsRefused[r] = wsRefused.WithLabelValues(upgradeRefusalNames[r])
	}
	closed := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "connections_closed_total",
		Help: "Client connections closed, by the first reason: eof (the client closed or reset it), idle (--idle-timeout), " +
			"slow_client (its write queue filled up), write_timeout, write_error, read_error, frame_too_large, kicked (a newer login), " +
			"expired (the gateway's presence lease had expired), delivery_error, drain, stop, conn_limit (refused at --max-conns), " +
			"unsupported_data (a binary WebSocket message), flood (far more sent than answered), other."},
		[]string{"reason"})
	for r := range netconn.NumReasons {
		m.closed[r] = closed.WithLabelValues(r.String())
	}
	logins := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "logins_total",
		Help: "LOGIN requests by method (password or resume token) and result: ok, invalid (credentials or frame), " +
			"in_use (refused by the reject policy), throttled (too many failed logins: errno 119), error (a service failed)."}, []string{"method", "result"})
	for tok, method := range []string{"password", "resume"} {
		for r := range numLoginResults {
			m.logins[tok][r] = logins.WithLabelValues(method, loginResultNames[r])
		}
	}
	framesIn := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "frames_in_total",
		Help: "Frames received from clients by msgid name (other: unknown msgid or not a JSON object with a msgid)."}, []string{"msgid"})
	framesOut := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "frames_out_total",
		Help: "Frames handed to client connections by msgid name."}, []string{"msgid"})
	m.framesIn[0], m.framesOut[0] = framesIn.WithLabelValues("other"), framesOut.WithLabelValues("other")
	for i := 1; i < numMsgIDs; i++ {
		if id := wire.MsgID(i); id.Known() {
			m.framesIn[i] = framesIn.WithLabelValues(id.String())
			m.framesOut[i] = framesOut.WithLabelValues(id.String())
		}
	}
	for i := range numMsgIDs {
		if m.framesIn[i] == nil { // a gap in the numbering: counted as other
			m.framesIn[i], m.framesOut[i] = m.framesIn[0], m.framesOut[0]
		}
	}
	for _, subj := range meteredSubjects {
		svc, ep := splitSubject(subj)
		m.endpoints[subj] = endpointMetrics{svc, ep, m.reqSeconds.WithLabelValues(svc, ep)}
		for _, code := range requestErrorCodes {
			m.reqErrors.WithLabelValues(svc, ep, code) // every series exists from the start
		}
	}
	for _, c := range []prometheus.Collector{
		m.conns, m.sessions, m.draining, m.accepted, tconns, taccepted, wsRefused, closed, logins, framesIn, framesOut, m.pushed, m.acks, m.latency,
		m.rateLimited, m.reqSeconds, m.reqErrors,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// splitSubject turns natter.svc.<service>.<endpoint> into its two names
// (the metrics' labels); any other subject is service "other".
func splitSubject(subj string) (service, endpoint string) {
	if service, endpoint, ok := subject.ParseService(subj); ok {
		return service, endpoint
	}
	return "other", subj
}

// Call is api.Call, timed and counted: for the gateway's own requests
// made without a hub (the presence lease before the hub starts, the leave
// after it stopped).
func (m *Metrics) Call(ctx context.Context, nc *nats.Conn, subj string, req, resp any) error {
	start := time.Now()
	err := api.Call(ctx, nc, subj, req, resp)
	m.observe(subj, time.Since(start), err)
	return err
}

// requestErrorCodes are the code label's values of
// natter_gateway_service_request_errors_total.
var requestErrorCodes = []string{"unavailable", string(api.CodeBadRequest), string(api.CodeNotFound), string(api.CodeNameTaken),
	string(api.CodeBadLogin), string(api.CodeSessionLive), string(api.CodeBusy), string(api.CodeInternal), "other"}

// observe records a service request: its time and, when it failed, its
// code.
func (m *Metrics) observe(subj string, d time.Duration, err error) {
	e, ok := m.endpoints[subj]
	if !ok {
		e.service, e.endpoint = splitSubject(subj)
		e.seconds = m.reqSeconds.WithLabelValues(e.service, e.endpoint)
	}
	e.seconds.Observe(d.Seconds())
	if err != nil {
		code := "other"
		var ae *api.Error
		switch {
		case errors.As(err, &ae):
			code = string(ae.Code)
			switch ae.Code {
			case api.CodeBadRequest, api.CodeNotFound, api.CodeNameTaken, api.CodeBadLogin,
				api.CodeSessionLive, api.CodeBusy, api.CodeInternal:
			default:
				code = "other"
			}
		case errors.Is(err, api.ErrUnavailable):
			code = "unavailable"
		}
		m.reqErrors.WithLabelValues(e.service, e.endpoint, code).Inc()
	}
}

// UpgradeRefused counts a refused WebSocket handshake.
func (m *Metrics) UpgradeRefused(r UpgradeRefusal) { m.wsRefused[r].Inc() }

// SetDraining sets the draining gauge.
func (m *Metrics) SetDraining(on bool) {
	if on {
		m.draining.Set(1)
	} else {
		m.draining.Set(0)
	}
}

// midTime is the store time a UUIDv7 mid carries (its first 48 bits are
// Unix milliseconds), in Unix milliseconds; 0 when mid is not a UUIDv7.
func midTime(mid string) int64 {
	// xxxxxxxx-xxxx-7xxx-...
	if len(mid) != 36 || mid[8] != '-' || mid[13] != '-' || mid[14] != '7' {
		return 0
	}
	hi, err1 := strconv.ParseUint(mid[:8], 16, 32)
	lo, err2 := strconv.ParseUint(mid[9:13], 16, 16)
	if err1 != nil || err2 != nil {
		return 0
	}
	return int64(hi<<16 | lo)
}
