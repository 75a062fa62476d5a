// Package friend is natter's friend service: mutual friendships, friend
// lists with each friend's name and online state, and presence notices that
// tell a user's online friends when the user comes online or goes offline.
//
// It serves the natter.svc.friend.* subjects (see package subject) as a
// nats.go/micro service, and takes the user service's presence events from
// natter.presence through a plain queue subscription; the queue group
// "friend" lets any number of instances share both. Friendships are in the
// database (package friendship); names and online state come from the user
// service (natter.svc.user.profiles), which owns them.
//
// Presence fan-out never blocks the NATS delivery goroutine: the
// subscription only records each user's latest event in a coalescing map;
// one goroutine takes the map once per CoalesceWindow, looks up the friends
// of every user in it with one query per 1000 users, and publishes a
// kind=presence notice (api.PresenceNotice) to each friend's subject.User.
// Friends that are offline have no subscriber there and cost nothing more.
package friend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/services/friend/internal/friendship"
	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/natsreq"
	"github.com/natter-chat/natter/shared/sqldb"
	"github.com/natter-chat/natter/shared/subject"
)

// Endpoint names.
const (
	epAdd    = "add"
	epRemove = "remove"
	epList   = "list"
)

// stopTimeout bounds the wait for the presence subscription to drain.
const stopTimeout = 10 * time.Second

// Service is a running friend service.
type Service struct {
	nc       *nats.Conn
	req      *natsreq.Requester // requests to the user service
	store    *friendship.Store
	cfg      Config
	log      *slog.Logger
	instance *endpoint.Instance
	runner   *endpoint.Runner

	presence     *presence
	presenceSub  *nats.Subscription
	stopPresence context.CancelFunc
	presenceLoop sync.WaitGroup
}

// Start migrates the database, starts the presence fan-out, registers the
// micro service and the presence subscription on nc and flushes, so the
// endpoints answer once it returns. The caller owns nc and db and closes
// them after Stop. ctx bounds the start-up only.
func Start(ctx context.Context, nc *nats.Conn, db *sqldb.DB, cfg Config, log *slog.Logger) (*Service, error) {
	s, err := startService(ctx, nc, db, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("start friend service: %w", err)
	}
	return s, nil
}

func startService(ctx context.Context, nc *nats.Conn, db *sqldb.DB, cfg Config, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := endpoint.NewServiceMetrics(cfg.Registerer, subject.FriendService)
	if err != nil {
		return nil, err
	}
	store := friendship.New(db.WithMetrics(m.DB))
	pres := newPresence(nc, store, cfg, log)
	if err := m.Register(presenceMetrics(pres)...); err != nil {
		return nil, err
	}
	if err := store.Migrate(ctx); err != nil {
		return nil, err
	}
	req, err := natsreq.New(nc, natsreq.Options{Timeout: cfg.RequestTimeout})
	if err != nil {
		return nil, err
	}
	natsreq.OnReconnect(nc, req)
	s := &Service{
		nc:       nc,
		req:      req,
		store:    store,
		cfg:      cfg,
		log:      log,
		runner:   endpoint.NewRunner(cfg.Concurrency, cfg.RequestTimeout, log),
		presence: pres,
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stopPresence = cancel
	s.presenceLoop.Go(func() { s.presence.run(pctx) })

	s.instance, err = endpoint.Start(ctx, nc, endpoint.InstanceConfig{
		Name:        subject.FriendService,
		Description: "natter friendships (mutual), friend lists with online state, presence notices to online friends",
		Log:         log,
		Metrics:     m.Endpoints,
		Runners:     []*endpoint.Runner{s.runner},
		LogAttrs:    []any{"concurrency", cfg.Concurrency, "presence_coalesce", cfg.CoalesceWindow, "db", db.Dialect.String()},
		Subscribe:   s.subscribePresence,
		BeforeStop:  s.stopPresenceFanout,
		AfterStop:   func() { s.req.Close() }, // after the requests it serves have ended
	},
		endpoint.Spec{Name: epAdd, Subject: subject.FriendAdd,
			Description: "befriend a user; friendship is mutual and adding twice changes nothing: {user_id, friend_id} -> {}; errors bad_request (ids not positive, yourself), not_found (no such friend), busy (user service unavailable: retry)",
			Handler:     endpoint.JSON(s.runner, epAdd, s.add)},
		endpoint.Spec{Name: epRemove, Subject: subject.FriendRemove,
			Description: "unfriend, on both sides; removing a non-friend changes nothing: {user_id, friend_id} -> {}; errors bad_request",
			Handler:     endpoint.JSON(s.runner, epRemove, s.remove)},
		endpoint.Spec{Name: epList, Subject: subject.FriendList,
			Description: "a user's friends in id order with name and online state: {user_id} -> {friends: [{id, name, online}]}; errors bad_request, busy (user service unavailable: retry)",
			Handler:     endpoint.JSON(s.runner, epList, s.list)},
	)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// subscribePresence takes the user service's presence events, shared with
// the other instances (queue group "friend").
func (s *Service) subscribePresence() error {
	sub, err := s.nc.QueueSubscribe(subject.Presence, subject.FriendService, s.presence.receive)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject.Presence, err)
	}
	s.presenceSub = sub
	return nil
}

// Stop drains the presence subscription, fans out the presence events still
// pending once, stops taking requests (the endpoint subscriptions drain)
// and waits for the requests being handled. It does not close the NATS
// connection or the database. The few requests still being drained once
// Stop stops waiting for them are answered busy. Calling Stop again
// returns the first call's result.
func (s *Service) Stop() error { return s.instance.Stop() }

// stopPresenceFanout drains the presence subscription and lets the loop
// fan out what is pending once more before it returns.
func (s *Service) stopPresenceFanout() error {
	var err error
	if s.presenceSub != nil {
		err = s.drainPresence()
	}
	s.stopPresence()
	s.presenceLoop.Wait()
	return err
}

// drainPresence unsubscribes from presence events and waits until every
// event already delivered to this connection has been recorded.
func (s *Service) drainPresence() error {
	closed := s.presenceSub.StatusChanged(nats.SubscriptionClosed)
	if err := s.presenceSub.Drain(); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
			return nil // nothing more will be delivered
		}
		return fmt.Errorf("drain presence subscription: %w", err)
	}
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-closed:
		return nil
	case <-t.C:
		return fmt.Errorf("drain presence subscription: not done after %v", stopTimeout)
	}
}

// PresenceStats reports what this instance's presence fan-out has done.
func (s *Service) PresenceStats() PresenceStats {
	return s.presence.statsSnapshot()
}
