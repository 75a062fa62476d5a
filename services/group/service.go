// Package group is natter's group service: groups, their members (a creator
// and normal members) and group chat.
//
// It serves the natter.svc.group.* subjects (see package subject) as a
// nats.go/micro service whose queue group lets any number of instances share
// the load; groups and members are in the database (package roster). Member
// names and online state come from the user service; a group chat is stored
// for every other member with one batched store request to the offline
// service, which commits every inbox entry in one transaction and pushes
// them to the members' gateways.
//
// Group chat reads member lists from an in-memory cache that is checked on
// every send against the group's membership version (one primary-key query),
// so a cached list is never stale, on any instance: a member whose leave was
// acknowledged receives nothing sent afterwards, a member whose join was
// acknowledged receives everything sent afterwards.
package group

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natter-chat/natter/services/group/internal/roster"
	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/natsreq"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
)

// Endpoint names.
const (
	epCreate  = "create"
	epJoin    = "join"
	epLeave   = "leave"
	epMine    = "mine"
	epMembers = "members"
	epSend    = "send"
)

// Pending limits of the send endpoint's subscription (the others keep
// endpoint.DefaultPendingMsgs and DefaultPendingBytes): past them NATS drops
// requests and their callers time out.
const (
	sendPendingMsgs  = 1 << 14
	sendPendingBytes = 128 << 20
)

// Service is a running group service.
type Service struct {
	nc    *nats.Conn
	req   *natsreq.Requester // requests to the offline and user services
	store *roster.Store
	cfg   Config
	log   *slog.Logger
	cache *memberCache

	metrics *metrics

	instance *endpoint.Instance
	// runner runs the database-bound handlers; sendRunner the sends, which
	// mostly wait for the offline service.
	runner     *endpoint.Runner
	sendRunner *endpoint.Runner
}

// CacheStats is the data of the send endpoint in $SRV.STATS.
type CacheStats struct {
	// Groups is the number of groups whose members are cached.
	Groups int `json:"cached_groups"`
	// Hits counts sends answered from the cache, Reloads the member lists
	// read from the database (not cached, or the version had changed).
	Hits    int64 `json:"cache_hits"`
	Reloads int64 `json:"cache_reloads"`
}

// Start migrates the database, then registers the micro service on nc and
// flushes, so the endpoints answer once it returns. The caller owns nc and db
// and closes them after Stop. ctx bounds the start-up only.
func Start(ctx context.Context, nc *nats.Conn, db *sqldb.DB, cfg Config, log *slog.Logger) (*Service, error) {
	s, err := startService(ctx, nc, db, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("start group service: %w", err)
	}
	return s, nil
}

func startService(ctx context.Context, nc *nats.Conn, db *sqldb.DB, cfg Config, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cache := newMemberCache(cfg.CacheGroups)
	m, err := newMetrics(cfg.Registerer, cache)
	if err != nil {
		return nil, err
	}
	store := roster.New(db.WithMetrics(m.DB))
	if err := store.Migrate(ctx); err != nil {
		return nil, err
	}
	req, err := natsreq.New(nc, natsreq.Options{Timeout: cfg.RequestTimeout})
	if err != nil {
		return nil, err
	}
	natsreq.OnReconnect(nc, req)
	s := &Service{
		nc:         nc,
		req:        req,
		store:      store,
		cfg:        cfg,
		log:        log,
		cache:      cache,
		metrics:    m,
		runner:     endpoint.NewRunner(cfg.Concurrency, cfg.RequestTimeout, log),
		sendRunner: endpoint.NewRunner(cfg.Concurrency*sendConcurrencyFactor, cfg.RequestTimeout, log),
	}
	s.instance, err = endpoint.Start(ctx, nc, endpoint.InstanceConfig{
		Name:        subject.GroupService,
		Description: "natter groups: create, join, leave, member lists, and group chat stored for every other member through the offline service",
		StatsHandler: func(e *micro.Endpoint) any {
			if e.Name != epSend {
				return nil
			}
			return s.cacheStats()
		},
		Log:       log,
		Metrics:   m.Endpoints,
		Runners:   []*endpoint.Runner{s.runner, s.sendRunner},
		LogAttrs:  []any{"concurrency", cfg.Concurrency, "cache_groups", cfg.CacheGroups, "db", db.Dialect.String()},
		AfterStop: func() { s.req.Close() }, // after the requests it serves have ended
	},
		endpoint.Spec{Name: epCreate, Subject: subject.GroupCreate,
			Description: "create a group, the user its creator: {user_id, name (1-50 characters), desc (0-200)} -> {group_id}; errors bad_request",
			Handler:     endpoint.JSON(s.runner, epCreate, s.create)},
		endpoint.Spec{Name: epJoin, Subject: subject.GroupJoin,
			Description: "join a group (again: no change; an empty group's joiner becomes its creator): {user_id, group_id} -> {}; errors no_such_group, bad_request (group is full)",
			Handler:     endpoint.JSON(s.runner, epJoin, s.join)},
		endpoint.Spec{Name: epLeave, Subject: subject.GroupLeave,
			Description: "leave a group (a leaving creator is succeeded by the longest-standing member): {user_id, group_id} -> {}; errors no_such_group, not_member",
			Handler:     endpoint.JSON(s.runner, epLeave, s.leave)},
		endpoint.Spec{Name: epMine, Subject: subject.GroupMine,
			Description: "the user's groups with their members: {user_id} -> {groups: [{id, name, desc, members: [{id, name, role, online}]}]}",
			Handler:     endpoint.JSON(s.runner, epMine, s.mine)},
		endpoint.Spec{Name: epMembers, Subject: subject.GroupMembers,
			Description: "one group with its members, for members only: {user_id, group_id} -> {group: {id, name, desc, members}}; errors no_such_group, not_member",
			Handler:     endpoint.JSON(s.runner, epMembers, s.members)},
		endpoint.Spec{Name: epSend, Subject: subject.GroupSend,
			Description: "group chat, stored for every other member in one batched offline store and answered after the commit: {user_id, group_id, cid, body} -> {mid, duplicate}; errors no_such_group, not_member, bad_request, busy (retry with the same cid)",
			Handler:     endpoint.JSON(s.sendRunner, epSend, s.send), PendingMsgs: sendPendingMsgs, PendingBytes: sendPendingBytes},
	)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Stop stops taking requests (the endpoint subscriptions drain) and waits
// for the requests being handled. It does not close the NATS connection or
// the database. The few requests still being drained once Stop stops
// waiting for them are answered api.ErrBusy. Calling Stop again returns
// the first call's result.
func (s *Service) Stop() error { return s.instance.Stop() }

func (s *Service) cacheStats() CacheStats {
	return CacheStats{
		Groups:  s.cache.len(),
		Hits:    s.cache.hits.Load(),
		Reloads: s.cache.reloads.Load(),
	}
}
