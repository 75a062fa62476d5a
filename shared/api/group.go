package api

import "encoding/json"

// Group limits.
const (
	MaxGroupName = 50  // characters
	MaxGroupDesc = 200 // characters
	// MaxGroupMembers bounds a group so that one group chat is one batched
	// store (the offline service takes up to this many recipients).
	MaxGroupMembers = 5000
)

// Member roles.
const (
	RoleCreator = "creator"
	RoleNormal  = "normal"
)

// Group errors.
var (
	ErrNoSuchGroup = &Error{Code: CodeNoSuchGroup, Message: "no such group"}
	ErrNotMember   = &Error{Code: CodeNotMember, Message: "not a member of the group"}
)

// Group error codes.
const (
	CodeNoSuchGroup Code = "no_such_group"
	CodeNotMember   Code = "not_member"
)

// GroupCreateRequest creates a group with the user as its creator.
type GroupCreateRequest struct {
	UserID int64  `json:"user_id"`
	Name   string `json:"name"`
	Desc   string `json:"desc"`
}

// GroupCreateResponse carries the new group's id.
type GroupCreateResponse struct {
	GroupID int64 `json:"group_id"`
}

// GroupRequest names a user and a group: join (ErrNoSuchGroup; joining twice
// changes nothing), leave (ErrNotMember), members (the user must be a member:
// ErrNotMember).
type GroupRequest struct {
	UserID  int64 `json:"user_id"`
	GroupID int64 `json:"group_id"`
}

// GroupMineRequest asks for the groups a user is a member of.
type GroupMineRequest struct {
	UserID int64 `json:"user_id"`
}

// Group is a group with its members.
type Group struct {
	ID      int64    `json:"id"`
	Name    string   `json:"name"`
	Desc    string   `json:"desc"`
	Members []Member `json:"members"`
}

// Member is a group member with role and online state.
type Member struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Role   string `json:"role"`
	Online bool   `json:"online"`
}

// GroupMineResponse lists the user's groups, each with its members.
type GroupMineResponse struct {
	Groups []Group `json:"groups"`
}

// GroupMembersResponse is one group with its members.
type GroupMembersResponse struct {
	Group Group `json:"group"`
}

// GroupSendRequest is a group chat from UserID to GroupID. The group service
// checks membership (ErrNoSuchGroup, ErrNotMember) and stores Body for every
// other member through the offline service (one batched store), answering
// after the commit with the message id. CID deduplicates retries as for
// one-to-one chat.
type GroupSendRequest struct {
	UserID  int64           `json:"user_id"`
	GroupID int64           `json:"group_id"`
	CID     string          `json:"cid,omitempty"`
	Body    json.RawMessage `json:"body"`
}
