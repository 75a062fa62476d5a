package user

import (
	"context"
	"encoding/json"
	"errors"
	"sync"

	"github.com/nats-io/nats.go/micro"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/natsreq"
	"github.com/natter-chat/natter/shared/subject"
)

// A login's bundle (api.LoginBundle): after the claim, the user service
// reads the first inbox page, the friends and the groups for the gateway,
// in parallel, and answers them with the login. The gateway then waits for
// one answer instead of a login and three reads.
//
// The reads run after the handler has given back its runner slot
// (Runner.Then): friend.list asks this service for profiles, and logins
// waiting for it in every slot would wait for themselves. A read that
// fails is left out (Inbox nil, Lists false, or a name in Missing), and
// the gateway reads it itself or goes on without it, as before bundles.

// loginHandler is the login endpoint: endpoint.JSON's, with the bundle
// read after the slot is released.
func (s *Service) loginHandler() micro.Handler {
	return micro.HandlerFunc(func(m micro.Request) {
		var req api.LoginRequest
		if err := json.Unmarshal(m.Data(), &req); err != nil {
			endpoint.RespondError(s.log, m, "login", api.Errorf(api.CodeBadRequest, "malformed request: %v", err))
			return
		}
		started := s.runner.Go(func(ctx context.Context) {
			resp, err := s.login(ctx, &req)
			if err != nil {
				endpoint.RespondError(s.log, m, "login", err)
				return
			}
			if b := req.Bundle; b == nil || (b.InboxLimit <= 0 && !b.Lists) {
				endpoint.Respond(s.log, m, "login", resp)
				return
			}
			s.runner.Then(func(ctx context.Context) {
				s.bundle(ctx, req.UserID, req.Bundle, resp)
				s.respondBundled(m, resp)
			})
		})
		if !started {
			endpoint.RespondError(s.log, m, "login", api.Errorf(api.CodeBusy, "service instance stopping"))
		}
	})
}

// bundle reads what b asks for into resp.
func (s *Service) bundle(ctx context.Context, uid int64, b *api.LoginBundle, resp *api.LoginResponse) {
	var (
		wg               sync.WaitGroup
		inbox            api.FetchResponse
		friends          api.FriendListResponse
		groups           api.GroupMineResponse
		ierr, ferr, gerr error
	)
	call := func(subj string, req, into any, err *error) {
		wg.Go(func() { *err = natsreq.Call(ctx, s.req, subj, req, into, true) })
	}
	if b.InboxLimit > 0 {
		call(subject.OfflineFetch, api.FetchRequest{UserID: uid, After: -1, Limit: b.InboxLimit}, &inbox, &ierr)
	}
	if b.Lists {
		call(subject.FriendList, api.FriendListRequest{UserID: uid}, &friends, &ferr)
		call(subject.GroupMine, api.GroupMineRequest{UserID: uid}, &groups, &gerr)
	}
	wg.Wait()
	// missed counts and logs a part left out.
	missed := func(part, msg string, err error) {
		s.metrics.bundleMisses.WithLabelValues(part).Inc()
		s.log.Warn(msg, "user_id", uid, "err", err)
	}
	if b.InboxLimit > 0 {
		if ierr == nil {
			resp.Inbox = &inbox
		} else {
			missed("inbox", "login bundle: inbox unavailable (the gateway reads it)", ierr)
		}
	}
	if !b.Lists {
		return
	}
	resp.Lists = true
	if ferr == nil {
		resp.Friends = friends.Friends
	} else {
		missed("friends", "login: friend list unavailable", ferr)
		resp.Missing = append(resp.Missing, "friends")
	}
	if gerr == nil {
		resp.Groups = groups.Groups
	} else {
		missed("groups", "login: group list unavailable", gerr)
		resp.Missing = append(resp.Missing, "groups")
	}
}

// errTooLarge: a bundled answer over the server's payload limit.
var errTooLarge = errors.New("bundled login answer too large")

// respondBundled answers a bundled login. An answer too large for one
// message goes without its inbox page, then without its lists: the
// gateway reads them itself. The login has been claimed: it must be
// answered.
func (s *Service) respondBundled(m micro.Request, resp *api.LoginResponse) {
	limit := int(s.nc.MaxPayload()) - 1024 // headers
	for {
		data, err := api.Marshal(resp) // as every other answer (endpoint.Respond)
		if err == nil && len(data) > limit {
			err = errTooLarge
		}
		switch {
		case err == nil:
			if err := m.Respond(data); err != nil {
				endpoint.RespondError(s.log, m, "login", err)
			}
			return
		case resp.Inbox != nil:
			s.metrics.bundleMisses.WithLabelValues("inbox").Inc()
			resp.Inbox = nil
		case resp.Lists:
			s.metrics.bundleMisses.WithLabelValues("lists").Inc()
			resp.Lists, resp.Friends, resp.Groups, resp.Missing = false, nil, nil, nil
		default:
			endpoint.RespondError(s.log, m, "login", err)
			return
		}
	}
}
