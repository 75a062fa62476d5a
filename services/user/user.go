// Package user is natter's user service: accounts (register, lookup), logins
// that claim a user's single session, and the presence leases gateways renew
// so that a dead gateway's users count as offline.
//
// It serves the natter.svc.user.* subjects (see package subject) as a
// nats.go/micro service whose queue group lets any number of instances share
// the load; all state is in the database (package account).
package user

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/services/user/internal/account"
	"github.com/natter-chat/natter/services/user/internal/names"
	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/natsreq"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
)

// Login policies: what a login does while the user is online elsewhere.
const (
	PolicyKick   = "kick"   // replace the other session and tell it to close
	PolicyReject = "reject" // refuse the login with api.ErrSessionLive
)

// Limits of the requests.
const (
	MaxNameRunes     = 50   // characters in a user name
	MaxPasswordBytes = 72   // bcrypt ignores anything longer
	MaxIDLen         = 64   // bytes in a gateway or session id
	MaxLookupIDs     = 1000 // ids in one lookup
	MinGatewayTTL    = time.Second
	MaxGatewayTTL    = 5 * time.Minute
	cleanupInterval  = 10 * time.Minute
	// expireInterval is how often expired leases are looked for: a killed
	// gateway's users show offline at most this long after its TTL.
	expireInterval = time.Second
	cleanupAfter   = time.Hour // a lease expired this long ago is garbage
	cleanupTimeout = time.Minute
)

// Config configures the service.
type Config struct {
	// BcryptCost is the cost of new password hashes
	// (bcrypt.MinCost..bcrypt.MaxCost).
	BcryptCost int
	// LoginPolicy is PolicyKick (the default when empty) or PolicyReject.
	LoginPolicy string
	// Concurrency is how many requests are handled at once; size it like the
	// database pool.
	Concurrency int
	// RequestTimeout bounds the handling of one request.
	RequestTimeout time.Duration
	// ResumeTTL is how long a resume token stays valid (0: 24 h).
	ResumeTTL time.Duration
	// Throttle limits password guessing (the zero value: off).
	Throttle ThrottleConfig
	// Registerer is where the service registers its metrics (natter_*,
	// service="user"); nil: they are counted but not registered anywhere.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the configuration the binaries start from.
func DefaultConfig() Config {
	return Config{
		BcryptCost:     10,
		LoginPolicy:    PolicyKick,
		Concurrency:    4,
		RequestTimeout: 10 * time.Second,
		ResumeTTL:      24 * time.Hour,
		Throttle:       DefaultThrottle(),
	}
}

// Validate reports every invalid field of c, each naming its flag.
func (c Config) Validate() error {
	var errs []error
	if c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost {
		errs = append(errs, fmt.Errorf("--%s %d: want %d-%d", flagBcryptCost, c.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost))
	}
	if _, err := c.policy(); err != nil {
		errs = append(errs, err)
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d (from --%s): want at least 1", c.Concurrency, cliflag.DBConns))
	}
	if c.ResumeTTL != 0 && c.ResumeTTL < time.Minute {
		errs = append(errs, fmt.Errorf("--%s %v: want at least 1m (0 for the default)", flagResumeTTL, c.ResumeTTL))
	}
	if c.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--%s %v: want more than 0", cliflag.RequestTimeout, c.RequestTimeout))
	}
	errs = append(errs, c.Throttle.Validate())
	return errors.Join(errs...)
}

func (c Config) policy() (account.Policy, error) {
	switch c.LoginPolicy {
	case "", PolicyKick:
		return account.PolicyKick, nil
	case PolicyReject:
		return account.PolicyReject, nil
	}
	return 0, fmt.Errorf("--%s %q: want %s or %s", flagLoginPolicy, c.LoginPolicy, PolicyKick, PolicyReject)
}

// Service is a running user service.
type Service struct {
	nc     *nats.Conn
	store  *account.Store
	cfg    Config
	policy account.Policy
	log    *slog.Logger
	// dummyHash is compared against when a login names an unknown id, so
	// that the answer takes as long as for a wrong password.
	dummyHash []byte

	instance *endpoint.Instance
	runner   *endpoint.Runner
	// req asks the offline, friend and group services for a login's
	// bundle (api.LoginBundle).
	req     *natsreq.Requester
	metrics *metrics
	claims  *claimBatcher // SQLite: logins share transactions; nil on MySQL
	// throttle limits password guessing.
	throttle *throttle
	// namesDone is the highest user id whose name has its unique form
	// (account.BackfillNameKeys); owned by the cleanup loop after Start.
	namesDone int64

	stopCleanup context.CancelFunc
	cleanupDone chan struct{}
}

// Start migrates the database, then registers the micro service on nc and
// flushes, so the endpoints answer once it returns. The caller owns nc and db
// and closes them after Stop. ctx bounds the start-up only; the periodic lease
// cleanup runs until Stop.
func Start(ctx context.Context, nc *nats.Conn, db *sqldb.DB, cfg Config, log *slog.Logger) (*Service, error) {
	s, err := startService(ctx, nc, db, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("start user service: %w", err)
	}
	return s, nil
}

func startService(ctx context.Context, nc *nats.Conn, db *sqldb.DB, cfg Config, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	policy, _ := cfg.policy()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	store := account.New(db.WithMetrics(m.DB))
	if err := store.Migrate(ctx); err != nil {
		return nil, err
	}
	if err := store.Prepare(ctx); err != nil {
		return nil, err
	}
	namesDone, err := backfillNames(ctx, store, 0, log)
	if err != nil {
		return nil, err
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("natter dummy password"), cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("dummy hash: %w", err)
	}
	req, err := natsreq.New(nc, natsreq.Options{Timeout: cfg.RequestTimeout})
	if err != nil {
		return nil, err
	}
	natsreq.OnReconnect(nc, req)
	s := &Service{
		nc:          nc,
		store:       store,
		cfg:         cfg,
		policy:      policy,
		log:         log,
		dummyHash:   dummy,
		runner:      endpoint.NewRunner(concurrency(cfg.Concurrency, db.Dialect), cfg.RequestTimeout, log),
		req:         req,
		metrics:     m,
		throttle:    newThrottle(cfg.Throttle, store, m, log),
		namesDone:   namesDone,
		cleanupDone: make(chan struct{}),
	}
	if db.Dialect == sqldb.SQLite {
		s.claims = newClaimBatcher(store)
	}
	s.instance, err = endpoint.Start(ctx, nc, endpoint.InstanceConfig{
		Name:        subject.UserService,
		Description: "natter accounts, logins and the single session of each user",
		Log:         log,
		Metrics:     m.Endpoints,
		Runners:     []*endpoint.Runner{s.runner},
		LogAttrs: []any{"login_policy", policy.String(),
			"concurrency", concurrency(cfg.Concurrency, db.Dialect), "db", db.Dialect.String()},
		AfterStop: s.afterStop,
	},
		endpoint.Spec{Name: "register", Subject: subject.UserRegister,
			Description: "create an account: {name, password} -> {id}; errors name_taken, bad_request",
			Handler:     endpoint.JSON(s.runner, "register", s.register)},
		endpoint.Spec{Name: "login", Subject: subject.UserLogin,
			Description: "check a password or resume token and claim the user's single session: {user_id, password | resume_token, gateway_id, session_id, bundle} -> {name, resume_token, replaced, inbox, lists, friends, groups, missing}; errors bad_login, session_live, login_throttled",
			Handler:     s.loginHandler()},
		endpoint.Spec{Name: "logouts", Subject: subject.UserLogouts,
			Description: "release many sessions, each if it is still its user's: {sessions: [{user_id, session_id}]} (1-1000) -> {}",
			Handler:     endpoint.JSON(s.runner, "logouts", s.logouts)},
		endpoint.Spec{Name: "lookup", Subject: subject.UserLookup,
			Description: "names of user ids, unknown ids left out: {ids} (1-1000) -> {users: [{id, name}]}",
			Handler:     endpoint.JSON(s.runner, "lookup", s.lookup)},
		endpoint.Spec{Name: "profiles", Subject: subject.UserProfiles,
			Description: "names and online state of user ids, in the order asked, unknown ids left out: {ids} (1-5000) -> {users: [{id, name, online}]}",
			Handler:     endpoint.JSON(s.runner, "profiles", s.profiles)},
		endpoint.Spec{Name: "sessions", Subject: subject.UserSessions,
			Description: "the sessions recorded for a gateway, in user id order, paged: {gateway_id, after_user_id, limit} (1-5000) -> {sessions: [{user_id, session_id}], more}",
			Handler:     endpoint.JSON(s.runner, "sessions", s.sessions)},
		endpoint.Spec{Name: "gwbeat", Subject: subject.UserGatewayBeat,
			Description: "renew a gateway's presence lease: {gateway_id, ttl_ms} (ttl clamped to 1s-5min) -> {new}: new means the lease had expired and its sessions were ended",
			Handler:     endpoint.JSON(s.runner, "gwbeat", s.gatewayBeat)},
		endpoint.Spec{Name: "gwleave", Subject: subject.UserGatewayLeave,
			Description: "a gateway stops: end its sessions and drop its lease: {gateway_id} -> {}",
			Handler:     endpoint.JSON(s.runner, "gwleave", s.gatewayLeave)},
	)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stopCleanup = cancel
	go s.cleanupLoop(cctx)
	return s, nil
}

// Stop stops taking requests (the endpoint subscriptions drain), waits for
// the requests being handled, and stops the lease cleanup. It does not
// close the NATS connection or the database. The few requests still being
// drained once Stop stops waiting for them are answered api.ErrBusy.
// Calling Stop again returns the first call's result.
func (s *Service) Stop() error { return s.instance.Stop() }

// afterStop closes what the handlers used, once none runs, and stops the
// lease cleanup (not started yet when Start fails).
func (s *Service) afterStop() {
	if s.claims != nil {
		s.claims.close() // none is waiting for a claim
	}
	s.req.Close() // none is waiting for a bundle
	if s.stopCleanup != nil {
		s.stopCleanup()
		<-s.cleanupDone
	}
}

// sqliteConcurrency is the fewest requests the service handles at once on
// SQLite. Logins there wait for the claim batcher's shared commit (a sync
// to disk): the more logins wait at once, the fewer commits they share. With
// 4 (the read pool's size), a resume storm committed a batch of 1-4 logins
// at a time; with 16, 15-30 % less CPU per login and ~20 % more logins/s
// (docs/benchmarks.md). Reads past the pool's 4 connections wait for one.
const sqliteConcurrency = 16

// concurrency is the runner's limit: the configured one, at least
// sqliteConcurrency on SQLite.
func concurrency(configured int, d sqldb.Dialect) int {
	if d == sqldb.SQLite {
		return max(configured, sqliteConcurrency)
	}
	return configured
}

func (s *Service) cleanupLoop(ctx context.Context) {
	defer close(s.cleanupDone)
	expire := time.NewTicker(expireInterval)
	defer expire.Stop()
	cleanup := time.NewTicker(cleanupInterval)
	defer cleanup.Stop()
	s.cleanup(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-expire.C:
			s.expireLeases(ctx)
		case <-cleanup.C:
			s.cleanup(ctx)
		}
	}
}

func (s *Service) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	cutoff := time.Now().Add(-cleanupAfter).UnixMilli()
	sessions, gateways, err := s.store.Cleanup(ctx, cutoff)
	switch {
	case err != nil && ctx.Err() != nil:
		// Stopping.
	case err != nil:
		s.log.Error("lease cleanup", "err", err)
	case sessions > 0 || gateways > 0:
		s.log.Info("lease cleanup", "sessions", sessions, "gateways", gateways)
	}
	if n, err := s.store.ExpireTokens(ctx, time.Now().UnixMilli()); err != nil && ctx.Err() == nil {
		s.log.Error("expire resume tokens", "err", err)
	} else if n > 0 {
		s.log.Info("expired resume tokens", "tokens", n)
	}
	if n, err := s.throttle.expire(ctx, time.Now()); err != nil && ctx.Err() == nil {
		s.log.Error("expire failed-login records", "err", err)
	} else if n > 0 {
		s.log.Debug("expired failed-login records", "records", n)
	}
	// Accounts registered by an older version during a rolling upgrade.
	if done, err := backfillNames(ctx, s.store, s.namesDone, s.log); err != nil && ctx.Err() == nil {
		s.log.Error("name keys", "err", err)
	} else {
		s.namesDone = done
	}
}

// backfillNames gives the accounts after id done that have none the unique
// form of their name (names.KeyHash), logging every account whose name
// collides with an older one's after normalisation: both keep their names
// and ids (logins are by id), no new account can take either form, and the
// operator may rename the younger one.
func backfillNames(ctx context.Context, store *account.Store, done int64, log *slog.Logger) (int64, error) {
	last, collisions, err := store.BackfillNameKeys(ctx, done, names.KeyHash, func(name string, id int64) string {
		// Control characters never reach a key of a new name (CheckName).
		return names.KeyHash(names.Key(name) + "\x00" + strconv.FormatInt(id, 10))
	})
	for _, c := range collisions {
		log.Warn("user name collides with an older account's after Unicode normalisation and case folding; both kept",
			"user_id", c.UserID, "owner_id", c.OwnerID)
	}
	return last, err
}
