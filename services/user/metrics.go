package user

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/subject"
)

// metrics are the user service's Prometheus metrics, labelled
// service="user".
type metrics struct {
	endpoint.ServiceMetrics

	logins        *prometheus.CounterVec
	registrations *prometheus.CounterVec
	kicks         prometheus.Counter
	expired       prometheus.Counter

	loginThrottled *prometheus.CounterVec
	loginDelays    *prometheus.CounterVec
	bundleMisses   *prometheus.CounterVec
}

// Login methods and results (labels).
const (
	methodPassword = "password"
	methodResume   = "resume"

	resultOK          = "ok"
	resultBadLogin    = "bad_login"
	resultThrottled   = "throttled"
	resultSessionLive = "session_live"
	resultNameTaken   = "name_taken"
	resultBadRequest  = "bad_request"
	resultError       = "error"
)

// newMetrics registers the service's metrics on reg (nil: a registry of
// their own, counted but not served).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	sm, err := endpoint.NewServiceMetrics(reg, subject.UserService)
	if err != nil {
		return nil, err
	}
	labels := prometheus.Labels{"service": subject.UserService}
	m := &metrics{
		ServiceMetrics: sm,
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "natter_user_logins_total",
			Help:        "Logins by method (password, or resume with a resume token) and result: ok, bad_login, throttled (refused for too many failed logins; the password was not checked), session_live, bad_request or error.",
			ConstLabels: labels,
		}, []string{"method", "result"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "natter_user_registrations_total",
			Help:        "Registrations by result: ok, name_taken, bad_request or error.",
			ConstLabels: labels,
		}, []string{"result"}),
		kicks: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "natter_user_kicks_total",
			Help:        "Sessions replaced by a newer login of the same user (login policy kick).",
			ConstLabels: labels,
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "natter_user_lease_expired_sessions_total",
			Help:        "Sessions ended because their gateway's presence lease expired.",
			ConstLabels: labels,
		}),
		loginThrottled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "natter_user_login_throttled_total",
			Help:        "Password logins refused without checking the password, by scope: account (too many failed logins of the account), address (from the client's address) or concurrent (another check of the account was running).",
			ConstLabels: labels,
		}, []string{"scope"}),
		loginDelays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "natter_user_login_delays_total",
			Help:        "Failed password logins that locked their account or address for a while (past the free failures), by scope: account or address.",
			ConstLabels: labels,
		}, []string{"scope"}),
		bundleMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "natter_user_login_bundle_misses_total",
			Help:        "Parts of a login's bundle left out, by part: inbox, friends or groups (the service did not answer in time), lists (inbox and lists together too large for one message). The gateway reads a missing inbox and lists itself; a missing friend or group list is reported to the client as incomplete.",
			ConstLabels: labels,
		}, []string{"part"}),
	}
	for _, part := range []string{"inbox", "friends", "groups", "lists"} {
		m.bundleMisses.WithLabelValues(part)
	}
	for _, scope := range []string{scopeAccount, scopeAddress, scopeConcurrent} {
		m.loginThrottled.WithLabelValues(scope)
	}
	for _, scope := range []string{scopeAccount, scopeAddress} {
		m.loginDelays.WithLabelValues(scope)
	}
	for _, method := range []string{methodPassword, methodResume} {
		for _, r := range []string{resultOK, resultBadLogin, resultThrottled, resultSessionLive, resultBadRequest, resultError} {
			m.logins.WithLabelValues(method, r)
		}
	}
	for _, r := range []string{resultOK, resultNameTaken, resultBadRequest, resultError} {
		m.registrations.WithLabelValues(r)
	}
	if err := m.Register(m.logins, m.registrations, m.kicks, m.expired, m.loginThrottled, m.loginDelays, m.bundleMisses); err != nil {
		return nil, err
	}
	return m, nil
}

// login counts a login that ended with err.
func (m *metrics) login(resumed bool, err error) {
	method := methodPassword
	if resumed {
		method = methodResume
	}
	var r string
	switch {
	case err == nil:
		r = resultOK
	case errors.Is(err, api.ErrBadLogin):
		r = resultBadLogin
	case errors.Is(err, api.ErrLoginThrottled):
		r = resultThrottled
	case errors.Is(err, api.ErrSessionLive):
		r = resultSessionLive
	case errors.Is(err, api.ErrBadRequest):
		r = resultBadRequest
	default:
		r = resultError
	}
	m.logins.WithLabelValues(method, r).Inc()
}

// register counts a registration that ended with err.
func (m *metrics) register(err error) {
	var r string
	switch {
	case err == nil:
		r = resultOK
	case errors.Is(err, api.ErrNameTaken):
		r = resultNameTaken
	case errors.Is(err, api.ErrBadRequest):
		r = resultBadRequest
	default:
		r = resultError
	}
	m.registrations.WithLabelValues(r).Inc()
}
