package group

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/natter-chat/natter/services/group/internal/roster"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/natsreq"
	"github.com/natter-chat/natter/shared/subject"
)

// create creates a group with the user as its creator.
func (s *Service) create(ctx context.Context, req *api.GroupCreateRequest) (*api.GroupCreateResponse, error) {
	if err := checkUser(req.UserID); err != nil {
		return nil, err
	}
	if err := api.CheckName(req.Name, api.MaxGroupName); err != nil {
		return nil, err
	}
	if err := checkDesc(req.Desc); err != nil {
		return nil, err
	}
	id, err := s.store.Create(ctx, req.UserID, req.Name, req.Desc)
	if err != nil {
		return nil, err
	}
	s.metrics.created.Inc()
	s.log.Info("group created", "group_id", id, "user_id", req.UserID)
	return &api.GroupCreateResponse{GroupID: id}, nil
}

// join makes the user a member.
func (s *Service) join(ctx context.Context, req *api.GroupRequest) (*api.Empty, error) {
	if err := checkGroupRequest(req); err != nil {
		return nil, err
	}
	joined, role, err := s.store.Join(ctx, req.GroupID, req.UserID, api.MaxGroupMembers)
	if err != nil {
		return nil, storeError(err)
	}
	if joined {
		s.metrics.membership.WithLabelValues("join").Inc()
		s.log.Debug("group joined", "group_id", req.GroupID, "user_id", req.UserID, "role", role)
	}
	return &api.Empty{}, nil
}

// leave ends the user's membership.
func (s *Service) leave(ctx context.Context, req *api.GroupRequest) (*api.Empty, error) {
	if err := checkGroupRequest(req); err != nil {
		return nil, err
	}
	successor, err := s.store.Leave(ctx, req.GroupID, req.UserID)
	if err != nil {
		return nil, storeError(err)
	}
	s.metrics.membership.WithLabelValues("leave").Inc()
	s.log.Debug("group left", "group_id", req.GroupID, "user_id", req.UserID, "new_creator", successor)
	return &api.Empty{}, nil
}

// mine lists the user's groups with their members.
func (s *Service) mine(ctx context.Context, req *api.GroupMineRequest) (*api.GroupMineResponse, error) {
	if err := checkUser(req.UserID); err != nil {
		return nil, err
	}
	groups, err := s.store.Mine(ctx, req.UserID)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, g := range groups {
		for _, m := range g.Members {
			ids = append(ids, m.UserID)
		}
	}
	profiles, err := s.profiles(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("groups of %d: %w", req.UserID, err)
	}
	resp := &api.GroupMineResponse{Groups: make([]api.Group, len(groups))}
	for i, g := range groups {
		resp.Groups[i] = apiGroup(g, profiles)
	}
	return resp, nil
}

// members lists one group's members to one of them.
func (s *Service) members(ctx context.Context, req *api.GroupRequest) (*api.GroupMembersResponse, error) {
	if err := checkGroupRequest(req); err != nil {
		return nil, err
	}
	g, err := s.store.Members(ctx, req.GroupID, req.UserID)
	if err != nil {
		return nil, storeError(err)
	}
	ids := make([]int64, len(g.Members))
	for i, m := range g.Members {
		ids[i] = m.UserID
	}
	profiles, err := s.profiles(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("members of group %d: %w", req.GroupID, err)
	}
	return &api.GroupMembersResponse{Group: apiGroup(g, profiles)}, nil
}

// send stores a group chat for every member but the sender.
func (s *Service) send(ctx context.Context, req *api.GroupSendRequest) (*api.StoreResponse, error) {
	if err := checkGroupRequest(&api.GroupRequest{UserID: req.UserID, GroupID: req.GroupID}); err != nil {
		return nil, err
	}
	if len(req.CID) > api.MaxCIDLen {
		return nil, api.Errorf(api.CodeBadRequest, "cid longer than %d bytes", api.MaxCIDLen)
	}
	if err := checkBody(req.Body); err != nil {
		return nil, err
	}
	set, err := s.memberSet(ctx, req.GroupID)
	if err != nil {
		return nil, storeError(err)
	}
	if !set.has(req.UserID) {
		return nil, api.ErrNotMember
	}
	to := set.others(req.UserID)
	if len(to) == 0 {
		// Alone in the group: nobody to store it for.
		mid, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("group send: new mid: %w", err)
		}
		return &api.StoreResponse{MID: mid.String()}, nil
	}
	// Sent again after a lost NATS node or offline instance: the cid makes
	// it idempotent.
	var resp api.StoreResponse
	msg, err := s.req.Request(ctx, subject.OfflineStore, api.AppendStoreRequest(nil, req.UserID, to, req.CID, req.Body),
		natsreq.CallOpts{Idempotent: true})
	if err == nil {
		resp, err = api.DecodeStoreAnswer(msg)
	}
	if err = s.callError(subject.OfflineStore, err); err != nil {
		return nil, fmt.Errorf("group send to group %d: %w", req.GroupID, err)
	}
	if !resp.Duplicate {
		s.metrics.messages.Inc()
		s.metrics.recipients.Add(float64(len(to)))
	}
	return &resp, nil
}

// memberSet returns group's current members: the cached set if the group's
// version (read now) is the one it was cached at, else a fresh read.
func (s *Service) memberSet(ctx context.Context, group int64) (*memberSet, error) {
	version, err := s.store.Version(ctx, group)
	if err != nil {
		return nil, err
	}
	if set, ok := s.cache.get(group, version); ok {
		s.cache.hits.Add(1)
		return set, nil
	}
	// Read after the version: the ids reflect it or a later one, so the set
	// is never answered for a version older than its contents.
	ids, err := s.store.MemberIDs(ctx, group)
	if err != nil {
		return nil, err
	}
	s.cache.reloads.Add(1)
	set := &memberSet{version: version, ids: ids}
	s.cache.put(group, set)
	return set, nil
}

// profiles returns the names and online state of ids (duplicates allowed)
// from the user service, in requests of at most api.MaxProfiles ids.
func (s *Service) profiles(ctx context.Context, ids []int64) (map[int64]api.Profile, error) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	out := make(map[int64]api.Profile, len(ids))
	for chunk := range slices.Chunk(ids, api.MaxProfiles) {
		var resp api.ProfilesResponse
		if err := s.call(ctx, subject.UserProfiles, api.ProfilesRequest{IDs: chunk}, &resp); err != nil {
			return nil, err
		}
		for _, p := range resp.Users {
			out[p.ID] = p
		}
	}
	return out, nil
}

// call sends a request to another service. Its *api.Error answers pass
// through as they are; failing to reach it at all (no responders, timeout)
// becomes api.CodeBusy, so the client retries (a group send with the same
// cid, which the offline service deduplicates).
func (s *Service) call(ctx context.Context, subj string, req, resp any) error {
	return s.callError(subj, natsreq.Call(ctx, s.req, subj, req, resp, true))
}

// callError is call's mapping of the error of a call to subj.
func (s *Service) callError(subj string, err error) error {
	var ae *api.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, api.ErrUnavailable):
		s.log.Warn("service call failed", "subject", subj, "err", err)
		return api.Errorf(api.CodeBusy, "service unavailable, retry later")
	}
	return err
}

// apiGroup is g as answered, with each member's name and online state from
// profiles (a member the user service does not know has an empty name).
func apiGroup(g roster.GroupMembers, profiles map[int64]api.Profile) api.Group {
	out := api.Group{ID: g.ID, Name: g.Name, Desc: g.Desc, Members: make([]api.Member, len(g.Members))}
	for i, m := range g.Members {
		p := profiles[m.UserID]
		out.Members[i] = api.Member{ID: m.UserID, Name: p.Name, Role: apiRole(m.Role), Online: p.Online}
	}
	return out
}

func apiRole(role string) string {
	if role == roster.RoleCreator {
		return api.RoleCreator
	}
	return api.RoleNormal
}

// storeError maps the store's domain errors to service errors; anything else
// stays internal.
func storeError(err error) error {
	switch {
	case errors.Is(err, roster.ErrNoSuchGroup):
		return api.ErrNoSuchGroup
	case errors.Is(err, roster.ErrNotMember):
		return api.ErrNotMember
	case errors.Is(err, roster.ErrFull):
		return api.Errorf(api.CodeBadRequest, "group is full")
	}
	return err
}

func checkUser(id int64) error {
	if id <= 0 {
		return api.Errorf(api.CodeBadRequest, "user_id must be a positive user id")
	}
	return nil
}

func checkGroupRequest(req *api.GroupRequest) error {
	if err := checkUser(req.UserID); err != nil {
		return err
	}
	if req.GroupID <= 0 {
		return api.Errorf(api.CodeBadRequest, "group_id must be a positive group id")
	}
	return nil
}

// checkDesc accepts 0-api.MaxGroupDesc characters of valid UTF-8 without
// control characters other than line feeds and tabs.
func checkDesc(desc string) error {
	if !utf8.ValidString(desc) {
		return api.Errorf(api.CodeBadRequest, "desc must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(desc); n > api.MaxGroupDesc {
		return api.Errorf(api.CodeBadRequest, "desc must be at most %d characters, got %d", api.MaxGroupDesc, n)
	}
	for _, r := range desc {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return api.Errorf(api.CodeBadRequest, "desc must not contain control characters")
		}
	}
	return nil
}

// checkBody accepts a JSON object (the request decoded, so it is valid JSON)
// of valid UTF-8, at most api.MaxBodyLen bytes.
func checkBody(body []byte) error {
	if len(body) > api.MaxBodyLen {
		return api.Errorf(api.CodeBadRequest, "body longer than %d bytes", api.MaxBodyLen)
	}
	if b := bytes.TrimLeft(body, " \t\r\n"); len(b) == 0 || b[0] != '{' {
		return api.Errorf(api.CodeBadRequest, "body must be a JSON object")
	}
	if !utf8.Valid(body) {
		return api.Errorf(api.CodeBadRequest, "body is not valid UTF-8")
	}
	return nil
}
