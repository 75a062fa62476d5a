package endpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"
)

// Service is a NATS micro service (the protocol of ADR-32, as nats.go's
// micro speaks it: endpoints in a queue group, $SRV.PING, $SRV.INFO and
// $SRV.STATS) whose STATS count what Add's detached handlers answer.
//
// micro's own service counts a request when its handler returns and an
// error only when the handler itself answered one; a detached handler
// returns at once and answers later from another goroutine, so micro's
// STATS would show every request as an instant success. Service counts
// each request when its answer is sent (the same moment the Prometheus
// metrics of Add count it): num_requests, num_errors and last_error, and
// processing_time from the delivery of the request to its answer.
//
// Service implements micro.Service, so callers keep their micro.Service
// fields; endpoints are added with Add (AddEndpoint and AddGroup cannot
// read micro's endpoint options and refuse).
type Service struct {
	nc  *nats.Conn
	cfg micro.Config
	id  string

	mu        sync.Mutex
	started   time.Time
	endpoints []*serviceEndpoint
	verbSubs  []*nats.Subscription
	stopped   bool
}

// serviceEndpoint is one endpoint of a Service, with its figures.
type serviceEndpoint struct {
	info micro.EndpointInfo
	sub  *nats.Subscription

	mu         sync.Mutex
	requests   int
	errors     int
	lastError  string
	processing time.Duration
}

// record counts one answer: an error when code is not "".
func (e *serviceEndpoint) record(code, description string, d time.Duration) {
	e.mu.Lock()
	e.requests++
	e.processing += d
	if code != "" {
		e.errors++
		e.lastError = code + ":" + description // as micro writes it
	}
	e.mu.Unlock()
}

// asyncError counts an asynchronous error of the endpoint's subscription
// (a slow consumer's dropped requests), as micro does.
func (e *serviceEndpoint) asyncError(err error) {
	e.mu.Lock()
	e.errors++
	e.lastError = err.Error()
	e.mu.Unlock()
}

var (
	serviceName  = regexp.MustCompile(`^[A-Za-z0-9\-_]+$`)
	semVer       = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)
	subjectRE    = regexp.MustCompile(`^[^ >]*[>]?$`)
	errUseAdd    = errors.New("endpoint.Service: add endpoints with endpoint.Add")
	verbsOfStats = []micro.Verb{micro.PingVerb, micro.InfoVerb, micro.StatsVerb}
)

// AddService starts a micro service on nc, as micro.AddService does (the
// same Config, validated the same way; Endpoint, the single-endpoint
// shortcut, is not supported): it answers $SRV.PING, $SRV.INFO and
// $SRV.STATS from now on. Add its endpoints with Add, stop it with Stop.
// Config.ErrorHandler hears the asynchronous errors of its subscriptions,
// Config.DoneHandler its stop (by Stop or the connection's close).
func AddService(nc *nats.Conn, cfg micro.Config) (*Service, error) {
	switch {
	case !serviceName.MatchString(cfg.Name):
		return nil, fmt.Errorf("%w: service name %q", micro.ErrConfigValidation, cfg.Name)
	case !semVer.MatchString(cfg.Version):
		return nil, fmt.Errorf("%w: version %q is not SemVer", micro.ErrConfigValidation, cfg.Version)
	case cfg.Endpoint != nil:
		return nil, fmt.Errorf("%w: Config.Endpoint: %w", micro.ErrConfigValidation, errUseAdd)
	}
	cfg.Metadata = maps.Clone(cfg.Metadata)
	if cfg.Metadata == nil {
		cfg.Metadata = map[string]string{}
	}
	s := &Service{nc: nc, cfg: cfg, id: nuid.Next(), started: time.Now().UTC()}
	s.hook()
	for _, verb := range verbsOfStats {
		for _, subj := range []struct{ name, id string }{{"", ""}, {cfg.Name, ""}, {cfg.Name, s.id}} {
			subject, err := micro.ControlSubject(verb, subj.name, subj.id)
			if err == nil {
				var sub *nats.Subscription
				sub, err = nc.Subscribe(subject, s.verbHandler(verb))
				if err == nil {
					s.mu.Lock()
					s.verbSubs = append(s.verbSubs, sub)
					s.mu.Unlock()
				}
			}
			if err != nil {
				return nil, errors.Join(fmt.Errorf("subscribe %s: %w", verb, err), s.Stop())
			}
		}
	}
	return s, nil
}

// verbHandler answers one of $SRV.PING, INFO and STATS.
func (s *Service) verbHandler(verb micro.Verb) nats.MsgHandler {
	return func(m *nats.Msg) {
		var v any
		switch verb {
		case micro.PingVerb:
			v = micro.Ping{ServiceIdentity: s.identity(), Type: micro.PingResponseType}
		case micro.InfoVerb:
			v = s.Info()
		default:
			v = s.Stats()
		}
		data, err := json.Marshal(v)
		if err == nil {
			err = m.Respond(data)
		}
		if err != nil {
			s.asyncError(m.Sub, fmt.Errorf("answer %s: %w", verb, err))
		}
	}
}

func (s *Service) identity() micro.ServiceIdentity {
	return micro.ServiceIdentity{Name: s.cfg.Name, ID: s.id, Version: s.cfg.Version, Metadata: maps.Clone(s.cfg.Metadata)}
}

// queueGroup is where the endpoints' subscriptions share requests ("" for
// none).
func (s *Service) queueGroup() string {
	switch {
	case s.cfg.QueueGroupDisabled:
		return ""
	case s.cfg.QueueGroup != "":
		return s.cfg.QueueGroup
	}
	return micro.DefaultQueueGroup
}

// add subscribes an endpoint whose handler gets detached requests that
// count their answers in the returned endpoint's figures.
func (s *Service) add(spec Spec, msgs, bytes int, obs *observer) error {
	if !serviceName.MatchString(spec.Name) {
		return fmt.Errorf("%w: endpoint name %q", micro.ErrConfigValidation, spec.Name)
	}
	if spec.Subject == "" || !subjectRE.MatchString(spec.Subject) {
		return fmt.Errorf("%w: endpoint subject %q", micro.ErrConfigValidation, spec.Subject)
	}
	e := &serviceEndpoint{info: micro.EndpointInfo{
		Name: spec.Name, Subject: spec.Subject, QueueGroup: s.queueGroup(),
		Metadata: map[string]string{"description": spec.Description},
	}}
	cb := func(m *nats.Msg) {
		spec.Handler.Handle(&detached{Request: msgRequest{m}, nc: s.nc, obs: obs, stats: e, start: time.Now()})
	}
	var sub *nats.Subscription
	var err error
	if q := e.info.QueueGroup; q != "" {
		sub, err = s.nc.QueueSubscribe(spec.Subject, q, cb)
	} else {
		sub, err = s.nc.Subscribe(spec.Subject, cb)
	}
	if err != nil {
		return err
	}
	if err := sub.SetPendingLimits(msgs, bytes); err != nil {
		return errors.Join(err, sub.Unsubscribe())
	}
	e.sub = sub
	s.mu.Lock()
	s.endpoints = append(s.endpoints, e)
	s.mu.Unlock()
	return nil
}

// AddEndpoint refuses: micro's endpoint options cannot be read outside
// micro. Use Add.
func (s *Service) AddEndpoint(string, micro.Handler, ...micro.EndpointOpt) error { return errUseAdd }

// AddGroup returns a group whose AddEndpoint refuses, as AddEndpoint does.
func (s *Service) AddGroup(string, ...micro.GroupOpt) micro.Group { return refusingGroup{} }

type refusingGroup struct{}

func (refusingGroup) AddGroup(string, ...micro.GroupOpt) micro.Group { return refusingGroup{} }
func (refusingGroup) AddEndpoint(string, micro.Handler, ...micro.EndpointOpt) error {
	return errUseAdd
}

// Info is what $SRV.INFO answers.
func (s *Service) Info() micro.Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	eps := make([]micro.EndpointInfo, 0, len(s.endpoints))
	for _, e := range s.endpoints {
		i := e.info
		i.Metadata = maps.Clone(i.Metadata)
		eps = append(eps, i)
	}
	return micro.Info{ServiceIdentity: s.identity(), Type: micro.InfoResponseType,
		Description: s.cfg.Description, Endpoints: eps}
}

// Stats is what $SRV.STATS answers: per endpoint, the requests answered,
// the error answers, the last error and the time from delivery to answer.
func (s *Service) Stats() micro.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := micro.Stats{ServiceIdentity: s.identity(), Type: micro.StatsResponseType, Started: s.started,
		Endpoints: make([]*micro.EndpointStats, 0, len(s.endpoints))}
	for _, e := range s.endpoints {
		e.mu.Lock()
		es := &micro.EndpointStats{
			Name: e.info.Name, Subject: e.info.Subject, QueueGroup: e.info.QueueGroup,
			NumRequests: e.requests, NumErrors: e.errors, LastError: e.lastError,
			ProcessingTime: e.processing,
		}
		if e.requests > 0 {
			es.AverageProcessingTime = e.processing / time.Duration(e.requests)
		}
		e.mu.Unlock()
		if s.cfg.StatsHandler != nil {
			data, err := json.Marshal(s.cfg.StatsHandler(&micro.Endpoint{Name: e.info.Name,
				EndpointConfig: micro.EndpointConfig{Subject: e.info.Subject, QueueGroup: e.info.QueueGroup, Metadata: e.info.Metadata}}))
			if err == nil {
				es.Data = data
			}
		}
		st.Endpoints = append(st.Endpoints, es)
	}
	return st
}

// Reset zeroes every endpoint's figures and restarts the clock.
func (s *Service) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.endpoints {
		e.mu.Lock()
		e.requests, e.errors, e.lastError, e.processing = 0, 0, "", 0
		e.mu.Unlock()
	}
	s.started = time.Now().UTC()
}

// Stop drains the endpoints' and the verbs' subscriptions (requests
// already delivered are still handled) and marks the service stopped.
func (s *Service) Stop() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	subs := slices.Clone(s.verbSubs)
	for _, e := range s.endpoints {
		subs = append(subs, e.sub)
	}
	s.mu.Unlock()
	var errs []error
	for _, sub := range subs {
		if err := sub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, fmt.Errorf("drain %s: %w", sub.Subject, err))
		}
	}
	if s.cfg.DoneHandler != nil {
		s.cfg.DoneHandler(s)
	}
	return errors.Join(errs...)
}

// Stopped reports whether Stop ran (or the connection closed).
func (s *Service) Stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// asyncError hands an error of sub, if it is one of s's subscriptions, to
// the endpoint's figures and to Config.ErrorHandler; it reports whether
// sub was s's.
func (s *Service) asyncError(sub *nats.Subscription, err error) bool {
	if sub == nil {
		return false
	}
	s.mu.Lock()
	owned := slices.Contains(s.verbSubs, sub)
	for _, e := range s.endpoints {
		if e.sub == sub {
			owned = true
			e.asyncError(err)
		}
	}
	s.mu.Unlock()
	if owned && s.cfg.ErrorHandler != nil {
		s.cfg.ErrorHandler(s, &micro.NATSError{Subject: sub.Subject, Description: err.Error()})
	}
	return owned
}

// hook chains the connection's error and closed handlers to s: s hears
// the asynchronous errors of its subscriptions (and the handlers before it
// every error), and its connection's close stops it. Set the connection's
// own handlers before adding a service, as with micro.
func (s *Service) hook() {
	prevErr, prevClosed := s.nc.ErrorHandler(), s.nc.ClosedHandler()
	s.nc.SetErrorHandler(func(c *nats.Conn, sub *nats.Subscription, err error) {
		s.asyncError(sub, err)
		if prevErr != nil {
			prevErr(c, sub, err)
		}
	})
	s.nc.SetClosedHandler(func(c *nats.Conn) {
		s.closed()
		if prevClosed != nil {
			prevClosed(c)
		}
	})
}

// closed marks s stopped after its connection closed.
func (s *Service) closed() {
	s.mu.Lock()
	was := s.stopped
	s.stopped = true
	s.mu.Unlock()
	if !was && s.cfg.DoneHandler != nil {
		s.cfg.DoneHandler(s)
	}
}

// msgRequest is the micro.Request of a message a Service's endpoint
// receives; detached answers for it.
type msgRequest struct{ m *nats.Msg }

func (r msgRequest) Data() []byte           { return r.m.Data }
func (r msgRequest) Headers() micro.Headers { return micro.Headers(r.m.Header) }
func (r msgRequest) Subject() string        { return r.m.Subject }
func (r msgRequest) Reply() string          { return r.m.Reply }

// The answers go through detached, which overrides these.
func (r msgRequest) Respond([]byte, ...micro.RespondOpt) error  { return errUseAdd }
func (r msgRequest) RespondJSON(any, ...micro.RespondOpt) error { return errUseAdd }
func (r msgRequest) Error(string, string, []byte, ...micro.RespondOpt) error {
	return errUseAdd
}
