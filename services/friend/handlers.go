package friend

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/natsreq"
	"github.com/natter-chat/natter/shared/subject"
)

// checkIDs accepts positive user ids.
func checkIDs(ids ...int64) error {
	for _, id := range ids {
		if id <= 0 {
			return api.Errorf(api.CodeBadRequest, "user_id and friend_id must be positive user ids")
		}
	}
	return nil
}

func (s *Service) add(ctx context.Context, req *api.FriendRequest) (*api.Empty, error) {
	if err := checkIDs(req.UserID, req.FriendID); err != nil {
		return nil, err
	}
	if req.UserID == req.FriendID {
		return nil, api.Errorf(api.CodeBadRequest, "cannot befriend yourself")
	}
	found, err := s.profiles(ctx, []int64{req.FriendID})
	if err != nil {
		return nil, fmt.Errorf("add friend %d for %d: %w", req.FriendID, req.UserID, err)
	}
	if len(found) == 0 {
		return nil, api.Errorf(api.CodeNotFound, "user %d does not exist", req.FriendID)
	}
	if err := s.store.Add(ctx, req.UserID, req.FriendID); err != nil {
		return nil, err
	}
	s.log.Debug("friends added", "user_id", req.UserID, "friend_id", req.FriendID)
	return &api.Empty{}, nil
}

func (s *Service) remove(ctx context.Context, req *api.FriendRequest) (*api.Empty, error) {
	if err := checkIDs(req.UserID, req.FriendID); err != nil {
		return nil, err
	}
	if err := s.store.Remove(ctx, req.UserID, req.FriendID); err != nil {
		return nil, err
	}
	s.log.Debug("friends removed", "user_id", req.UserID, "friend_id", req.FriendID)
	return &api.Empty{}, nil
}

// list answers the user's friends in id order with name and online state,
// asking the user service for up to api.MaxProfiles of them at a time.
// Friends the user service does not know are left out.
func (s *Service) list(ctx context.Context, req *api.FriendListRequest) (*api.FriendListResponse, error) {
	if req.UserID <= 0 {
		return nil, api.Errorf(api.CodeBadRequest, "user_id must be a positive user id")
	}
	ids, err := s.store.List(ctx, req.UserID)
	if err != nil {
		return nil, err
	}
	resp := &api.FriendListResponse{Friends: make([]api.Profile, 0, len(ids))}
	for chunk := range slices.Chunk(ids, api.MaxProfiles) {
		found, err := s.profiles(ctx, chunk)
		if err != nil {
			return nil, fmt.Errorf("list friends of %d: %w", req.UserID, err)
		}
		resp.Friends = append(resp.Friends, found...)
	}
	// The user service answers in the order asked; keep the promise of id
	// order even if it ever does not.
	slices.SortFunc(resp.Friends, func(a, b api.Profile) int { return cmp.Compare(a.ID, b.ID) })
	return resp, nil
}

// errUserServiceBusy is answered when the user service cannot be reached or
// sheds load: the request may succeed if retried.
var errUserServiceBusy = api.Errorf(api.CodeBusy, "user service unavailable; retry later")

// profiles asks the user service for the names and online state of ids
// (at most api.MaxProfiles). A user service that does not answer, or
// answers busy, becomes a busy *api.Error for the caller to retry; any
// other failure is an internal error, never the user service's code.
//
// The call gets half of the request's time, so that a stuck user service is
// answered as busy before the caller, who usually waits as long as this
// request may take, gives up.
func (s *Service) profiles(ctx context.Context, ids []int64) ([]api.Profile, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout/2)
	defer cancel()
	var resp api.ProfilesResponse
	err := natsreq.Call(ctx, s.req, subject.UserProfiles, api.ProfilesRequest{IDs: ids}, &resp, true)
	if err == nil {
		return resp.Users, nil
	}
	var ae *api.Error
	switch {
	case errors.Is(err, api.ErrUnavailable):
		s.log.Warn("user service unavailable", "subject", subject.UserProfiles, "ids", len(ids), "err", err)
		return nil, fmt.Errorf("user profiles: %w (%w)", errUserServiceBusy, err)
	case errors.As(err, &ae) && ae.Code == api.CodeBusy:
		return nil, fmt.Errorf("user profiles: %w", errUserServiceBusy)
	case errors.As(err, &ae):
		// Not wrapped: the user service's code is not ours to answer.
		return nil, fmt.Errorf("user profiles: unexpected error %s: %s", ae.Code, ae.Message)
	}
	return nil, fmt.Errorf("user profiles: %w", err)
}
