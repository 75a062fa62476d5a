package api

// FriendRequest names a user and a friend. Add: the friend must exist
// (ErrNotFound), must not be the user (ErrBadRequest); adding twice changes
// nothing. Friendship is mutual: both see each other. Remove of a non-friend
// changes nothing.
type FriendRequest struct {
	UserID   int64 `json:"user_id"`
	FriendID int64 `json:"friend_id"`
}

// FriendListRequest asks for a user's friends.
type FriendListRequest struct {
	UserID int64 `json:"user_id"`
}

// FriendListResponse lists friends by id, with name and online state.
type FriendListResponse struct {
	Friends []Profile `json:"friends"`
}
