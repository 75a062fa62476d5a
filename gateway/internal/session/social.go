package session

import (
	"context"
	"errors"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/subject"
	"github.com/natter-chat/natter/shared/wire"
)

// Friends and groups: each handler checks the frame's fields, asks the
// friend or group service and answers (the legacy dialect only on error, as
// the original sends nothing).

func state(online bool) string {
	if online {
		return "online"
	}
	return "offline"
}

// positiveID reads a required id field > 0.
func positiveID(o wire.Object, field string) (int64, error) {
	id, err := o.Int(field)
	if err == nil && id <= 0 {
		err = &wire.FieldError{Field: field, Reason: "must be a positive id"}
	}
	return id, err
}

// socialError maps friend and group service errors to the wire.
func (s *Session) socialError(op string, err error) (wire.Errno, string) {
	switch {
	case errors.Is(err, api.ErrNotMember):
		return wire.NotMember, "not a member of this group"
	case errors.Is(err, api.ErrNoSuchGroup):
		return wire.NoSuchGroup, "no such group"
	}
	return s.serviceError(op, err)
}

// call runs one service request for msgid and answers the client: the
// reply's extra fields come from reply(resp) on success.
//
// It runs on a goroutine of its own while the request is under way: the
// connection goes on reading (pipelining); the answer names the request
// with its reqid.
func (s *Session) call(msgid wire.MsgID, reqid []byte, subj string, req, resp any, idempotent bool, reply func() map[string]any) {
	reqid = append([]byte(nil), reqid...) // the frame's bytes are the connection's
	s.goRequest(func() {
		ctx, cancel := s.requestCtx()
		defer cancel()
		if err := s.hub.c.call(ctx, subj, req, resp, idempotent); err != nil {
			errno, msg := s.socialError(subj, err)
			s.sendError(msgid, reqid, errno, msg, false)
			return
		}
		var extra map[string]any
		if reply != nil {
			extra = reply()
		}
		s.sendOK(msgid, reqid, extra)
	})
}

func (s *Session) handleFriend(msgid wire.MsgID, o wire.Object, reqid []byte, uid int64) {
	fid, err := positiveID(o, "friendid")
	if err != nil {
		s.sendError(msgid, reqid, wire.BadField, err.Error(), false)
		return
	}
	subj := subject.FriendAdd
	if msgid == wire.RemoveFriend {
		subj = subject.FriendRemove
	}
	s.call(msgid, reqid, subj, api.FriendRequest{UserID: uid, FriendID: fid}, nil, true, nil)
}

func (s *Session) handleListFriends(reqid []byte, uid int64) {
	var resp api.FriendListResponse
	s.call(wire.ListFriends, reqid, subject.FriendList, api.FriendListRequest{UserID: uid}, &resp, true,
		func() map[string]any { return map[string]any{"friends": friendObjects(resp.Friends)} })
}

func (s *Session) handleCreateGroup(o wire.Object, reqid []byte, uid int64) {
	name, err := o.String("groupname")
	var desc string
	if err == nil {
		desc, _, err = o.OptString("groupdesc")
	}
	if err != nil {
		s.sendError(wire.CreateGroup, reqid, wire.BadField, err.Error(), false)
		return
	}
	var resp api.GroupCreateResponse
	s.call(wire.CreateGroup, reqid, subject.GroupCreate, api.GroupCreateRequest{UserID: uid, Name: name, Desc: desc}, &resp, false,
		func() map[string]any { return map[string]any{"groupid": resp.GroupID} })
}

func (s *Session) handleGroup(msgid wire.MsgID, o wire.Object, reqid []byte, uid int64) {
	gid, err := positiveID(o, "groupid")
	if err != nil {
		s.sendError(msgid, reqid, wire.BadField, err.Error(), false)
		return
	}
	req := api.GroupRequest{UserID: uid, GroupID: gid}
	switch msgid {
	case wire.AddGroup:
		s.call(msgid, reqid, subject.GroupJoin, req, nil, true, nil)
	case wire.LeaveGroup:
		s.call(msgid, reqid, subject.GroupLeave, req, nil, true, nil)
	case wire.ListMembers:
		var resp api.GroupMembersResponse
		s.call(msgid, reqid, subject.GroupMembers, req, &resp, true,
			func() map[string]any { return map[string]any{"group": groupObject(resp.Group)} })
	}
}

func (s *Session) handleListGroups(reqid []byte, uid int64) {
	var resp api.GroupMineResponse
	s.call(wire.ListGroups, reqid, subject.GroupMine, api.GroupMineRequest{UserID: uid}, &resp, true,
		func() map[string]any {
			groups := make([]map[string]any, len(resp.Groups))
			for i, g := range resp.Groups {
				groups[i] = groupObject(g)
			}
			return map[string]any{"groups": groups}
		})
}

func friendObjects(fs []api.Profile) []map[string]any {
	out := make([]map[string]any, len(fs))
	for i, f := range fs {
		out[i] = map[string]any{"id": f.ID, "name": f.Name, "state": state(f.Online)}
	}
	return out
}

func groupObject(g api.Group) map[string]any {
	users := make([]map[string]any, len(g.Members))
	for i, m := range g.Members {
		users[i] = map[string]any{"id": m.ID, "name": m.Name, "state": state(m.Online), "role": m.Role}
	}
	return map[string]any{"id": g.ID, "groupname": g.Name, "groupdesc": g.Desc, "users": users}
}

// loginLists fetches the friend and group lists for the login ack. A service
// that does not answer leaves its list out (named in the result's missing)
// rather than failing the login.
func (s *Session) loginLists(ctx context.Context, uid int64) (friends []api.Profile, groups []api.Group, missing []string) {
	var fr api.FriendListResponse
	var gr api.GroupMineResponse
	ferr := make(chan error, 1)
	go func() {
		ferr <- s.hub.c.call(ctx, subject.FriendList, api.FriendListRequest{UserID: uid}, &fr, true)
	}()
	if err := s.hub.c.call(ctx, subject.GroupMine, api.GroupMineRequest{UserID: uid}, &gr, true); err != nil {
		s.log().Warn("login: group list unavailable", "user_id", uid, "err", err)
		missing = append(missing, "groups")
	}
	if err := <-ferr; err != nil {
		s.log().Warn("login: friend list unavailable", "user_id", uid, "err", err)
		missing = append(missing, "friends")
	}
	return fr.Friends, gr.Groups, missing
}
