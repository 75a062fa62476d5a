package user

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/services/user/internal/account"
	"github.com/natter-chat/natter/services/user/internal/names"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/subject"
)

func (s *Service) register(ctx context.Context, req *api.RegisterRequest) (_ *api.RegisterResponse, err error) {
	defer func() { s.metrics.register(err) }()
	if err := api.CheckName(req.Name, MaxNameRunes); err != nil {
		return nil, err
	}
	if n := len(req.Password); n < 1 || n > MaxPasswordBytes {
		return nil, api.Errorf(api.CodeBadRequest, "password must be 1-%d bytes, got %d", MaxPasswordBytes, n)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(req.Password), s.cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("register: hash password: %w", err)
	}
	id, err := s.store.Register(ctx, req.Name, names.KeyHash(req.Name), hash)
	if errors.Is(err, account.ErrNameTaken) {
		return nil, api.ErrNameTaken
	}
	if err != nil {
		return nil, err
	}
	s.log.Info("registered", "user_id", id)
	return &api.RegisterResponse{ID: id}, nil
}

// checkID accepts a gateway or session id of 1-MaxIDLen bytes.
func checkID(field, id string) error {
	if n := len(id); n < 1 || n > MaxIDLen {
		return api.Errorf(api.CodeBadRequest, "%s must be 1-%d bytes, got %d", field, MaxIDLen, n)
	}
	return nil
}

func (s *Service) login(ctx context.Context, req *api.LoginRequest) (_ *api.LoginResponse, err error) {
	defer func() { s.metrics.login(req.ResumeToken != "", err) }()
	if err := checkID("gateway_id", req.GatewayID); err != nil {
		return nil, err
	}
	if err := checkID("session_id", req.SessionID); err != nil {
		return nil, err
	}
	if len(req.Remote) > api.MaxRemoteLen {
		return nil, api.Errorf(api.CodeBadRequest, "remote must be at most %d bytes, got %d", api.MaxRemoteLen, len(req.Remote))
	}
	start := time.Now()
	now := start.UnixMilli()
	var (
		name      string
		resume    = req.ResumeToken != ""
		tokenHash string
		expiresAt int64
	)
	if resume {
		// Resuming: a hash lookup, no bcrypt. A token is 256 random bits:
		// guessing one is hopeless, so resumes are not throttled.
		tokenHash = hashToken(req.ResumeToken)
		var ok bool
		if name, expiresAt, ok, err = s.store.TokenUser(ctx, tokenHash, req.UserID, now); err != nil {
			return nil, fmt.Errorf("login %d: %w", req.UserID, err)
		}
		if !ok {
			s.log.Info("login failed: unknown or expired resume token", "user_id", req.UserID, "remote", req.Remote)
			return nil, api.ErrBadLogin
		}
	} else {
		a, err := s.throttle.begin(ctx, req.UserID, req.Remote, start)
		if err != nil {
			return nil, err
		}
		name, err = s.authenticate(ctx, req.UserID, req.Password)
		// Recorded even if the request's time ran out meanwhile.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RequestTimeout)
		s.throttle.end(rctx, a, errors.Is(err, api.ErrBadLogin), time.Now())
		cancel()
		if err != nil {
			return nil, err
		}
	}
	token := newToken()
	c := &account.Claim{UserID: req.UserID, SessionID: req.SessionID, GatewayID: req.GatewayID, Now: now, Policy: s.policy,
		IssueHash: hashToken(token)}
	if resume {
		c.RotateHash, c.ExpiresAt = tokenHash, expiresAt
	} else {
		ttl := s.cfg.ResumeTTL
		if ttl == 0 {
			ttl = DefaultConfig().ResumeTTL
		}
		c.ExpiresAt = now + ttl.Milliseconds()
	}
	if s.claims != nil {
		err = s.claims.claim(ctx, c) // batched with other logins (SQLite)
	} else {
		err = s.store.ClaimSessions(ctx, []*account.Claim{c})
	}
	if err == nil {
		err = c.Err
	}
	if errors.Is(err, account.ErrSessionLive) {
		return nil, api.ErrSessionLive
	}
	if errors.Is(err, account.ErrTokenUsed) {
		s.log.Info("login failed: resume token used meanwhile", "user_id", req.UserID, "remote", req.Remote)
		return nil, api.ErrBadLogin
	}
	if err != nil {
		return nil, fmt.Errorf("login %d: %w", req.UserID, err)
	}
	replaced := c.Replaced
	if replaced != "" {
		s.metrics.kicks.Inc()
		s.kick(req.UserID, replaced)
	}
	if !c.WasLive {
		s.presence(now, true, req.UserID)
	}
	s.log.Debug("logged in", "user_id", req.UserID, "gateway_id", req.GatewayID,
		"session_id", req.SessionID, "replaced", replaced, "resumed", resume, "remote", req.Remote)
	return &api.LoginResponse{Name: name, Replaced: replaced, ResumeToken: token}, nil
}

// newToken returns a random resume token (256 bits, URL-safe base64).
func newToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// hashToken is what is stored of a token: its SHA-256, hex-encoded.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// authenticate returns the name of user id if password is theirs, else
// api.ErrBadLogin. An unknown id still costs a bcrypt comparison, so the
// answer's timing does not tell which ids exist.
func (s *Service) authenticate(ctx context.Context, id int64, password string) (string, error) {
	name, hash, err := s.store.PasswordHash(ctx, id)
	if errors.Is(err, account.ErrNotFound) {
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
		return "", api.ErrBadLogin
	}
	if err != nil {
		return "", fmt.Errorf("login %d: %w", id, err)
	}
	if len(password) > MaxPasswordBytes {
		// bcrypt would compare only the first 72 bytes.
		return "", api.ErrBadLogin
	}
	err = bcrypt.CompareHashAndPassword(hash, []byte(password))
	if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return "", api.ErrBadLogin
	}
	if err != nil {
		return "", fmt.Errorf("login %d: compare password: %w", id, err)
	}
	return name, nil
}

// kick tells the gateway holding session sessionID of user uid that a newer
// login replaced it. The claim has committed already: a lost kick leaves a
// stale connection, not a second session in the database.
func (s *Service) kick(uid int64, sessionID string) {
	body, err := json.Marshal(api.KickNotice{SessionID: sessionID})
	if err != nil {
		s.log.Error("kick: encode notice", "user_id", uid, "err", err)
		return
	}
	msg := &nats.Msg{
		Subject: subject.User(uid),
		Header:  nats.Header{subject.KindHeader: []string{subject.KindKick}},
		Data:    body,
	}
	if err := s.nc.PublishMsg(msg); err != nil {
		s.log.Warn("kick: publish", "user_id", uid, "session_id", sessionID, "err", err)
	}
}

// logouts releases a gateway's batch of sessions.
func (s *Service) logouts(ctx context.Context, req *api.LogoutsRequest) (*api.Empty, error) {
	if n := len(req.Sessions); n < 1 || n > api.MaxLogouts {
		return nil, api.Errorf(api.CodeBadRequest, "sessions must list 1-%d sessions, got %d", api.MaxLogouts, n)
	}
	refs := make([]account.SessionRef, len(req.Sessions))
	var revoke []account.SessionRef
	for i, r := range req.Sessions {
		if err := checkID("session_id", r.SessionID); err != nil {
			return nil, err
		}
		refs[i] = account.SessionRef{UserID: r.UserID, SessionID: r.SessionID}
		if r.Revoke {
			revoke = append(revoke, refs[i])
		}
	}
	if err := s.store.RevokeTokens(ctx, revoke); err != nil {
		return nil, fmt.Errorf("logouts: %w", err)
	}
	ended, err := s.store.ReleaseSessions(ctx, refs)
	if err != nil {
		return nil, fmt.Errorf("logouts: %w", err)
	}
	s.presence(time.Now().UnixMilli(), false, ended...)
	return &api.Empty{}, nil
}

func (s *Service) lookup(ctx context.Context, req *api.LookupRequest) (*api.LookupResponse, error) {
	if n := len(req.IDs); n < 1 || n > MaxLookupIDs {
		return nil, api.Errorf(api.CodeBadRequest, "ids must list 1-%d ids, got %d", MaxLookupIDs, n)
	}
	users, err := s.store.Lookup(ctx, req.IDs)
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	resp := &api.LookupResponse{Users: make([]api.User, len(users))}
	for i, u := range users {
		resp.Users[i] = api.User{ID: u.ID, Name: u.Name}
	}
	return resp, nil
}

// profiles answers names and online state, in the order asked, unknown ids
// left out. Friend and group lists use it for their members.
func (s *Service) profiles(ctx context.Context, req *api.ProfilesRequest) (*api.ProfilesResponse, error) {
	if n := len(req.IDs); n < 1 || n > api.MaxProfiles {
		return nil, api.Errorf(api.CodeBadRequest, "ids must list 1-%d ids, got %d", api.MaxProfiles, n)
	}
	found, err := s.store.Profiles(ctx, req.IDs, time.Now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("profiles: %w", err)
	}
	byID := make(map[int64]account.Profile, len(found))
	for _, p := range found {
		byID[p.ID] = p
	}
	resp := &api.ProfilesResponse{Users: make([]api.Profile, 0, len(found))}
	for _, id := range req.IDs {
		if p, ok := byID[id]; ok {
			resp.Users = append(resp.Users, api.Profile{ID: p.ID, Name: p.Name, Online: p.Online})
			delete(byID, id) // an id asked twice is answered once
		}
	}
	return resp, nil
}

// sessions pages through the sessions recorded for a gateway.
func (s *Service) sessions(ctx context.Context, req *api.SessionsRequest) (*api.SessionsResponse, error) {
	if err := checkID("gateway_id", req.GatewayID); err != nil {
		return nil, err
	}
	if req.Limit < 1 || req.Limit > api.MaxSessionsPage {
		return nil, api.Errorf(api.CodeBadRequest, "limit must be 1-%d, got %d", api.MaxSessionsPage, req.Limit)
	}
	page, err := s.store.GatewaySessions(ctx, req.GatewayID, req.AfterUserID, req.Limit+1)
	if err != nil {
		return nil, fmt.Errorf("sessions of gateway %q: %w", req.GatewayID, err)
	}
	resp := &api.SessionsResponse{Sessions: make([]api.SessionRef, 0, min(len(page), req.Limit))}
	for i, p := range page {
		if i == req.Limit {
			resp.More = true
			break
		}
		resp.Sessions = append(resp.Sessions, api.SessionRef{UserID: p.UserID, SessionID: p.SessionID})
	}
	return resp, nil
}

func (s *Service) gatewayBeat(ctx context.Context, req *api.GatewayBeat) (*api.GatewayBeatResponse, error) {
	if err := checkID("gateway_id", req.GatewayID); err != nil {
		return nil, err
	}
	ttl := min(max(req.TTLMillis, MinGatewayTTL.Milliseconds()), MaxGatewayTTL.Milliseconds())
	created, err := s.store.GatewayBeat(ctx, req.GatewayID, time.Now().UnixMilli()+ttl)
	if err != nil {
		return nil, fmt.Errorf("gateway beat: %w", err)
	}
	return &api.GatewayBeatResponse{New: created}, nil
}

func (s *Service) gatewayLeave(ctx context.Context, req *api.GatewayLeave) (*api.Empty, error) {
	if err := checkID("gateway_id", req.GatewayID); err != nil {
		return nil, err
	}
	users, err := s.store.GatewayLeave(ctx, req.GatewayID)
	if err != nil {
		return nil, fmt.Errorf("gateway leave: %w", err)
	}
	s.presence(time.Now().UnixMilli(), false, users...)
	s.log.Info("gateway left", "gateway_id", req.GatewayID, "sessions", len(users))
	return &api.Empty{}, nil
}

// presenceChunk bounds one presence message (about 40 bytes an event) well
// under NATS's default 1 MiB payload limit.
const presenceChunk = 10000

// presence publishes that users came online or went offline at (unix ms).
// The friend service turns it into pushes to their online friends. It is
// called after the change committed; a lost event leaves a friend's view
// stale until the next change, never the session state.
func (s *Service) presence(at int64, online bool, users ...int64) {
	for len(users) > 0 {
		n := min(len(users), presenceChunk)
		ev := api.PresenceEvents{Events: make([]api.PresenceEvent, n)}
		for i, uid := range users[:n] {
			ev.Events[i] = api.PresenceEvent{UserID: uid, Online: online, At: at}
		}
		users = users[n:]
		body, err := api.Marshal(ev)
		if err != nil {
			s.log.Error("presence: encode", "err", err)
			return
		}
		if err := s.nc.Publish(subject.Presence, body); err != nil {
			s.log.Warn("presence: publish", "events", n, "err", err)
		}
	}
}

// expireLeases ends the sessions of gateways whose lease ran out (killed, or
// cut off from NATS) and announces those users as offline.
func (s *Service) expireLeases(ctx context.Context) {
	now := time.Now().UnixMilli()
	users, err := s.store.ExpireLeases(ctx, now)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("expire leases", "err", err)
		}
		return
	}
	if len(users) > 0 {
		s.metrics.expired.Add(float64(len(users)))
		s.log.Info("gateway lease expired; sessions ended", "sessions", len(users))
		s.presence(now, false, users...)
	}
}
