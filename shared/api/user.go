package api

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// RegisterRequest creates an account. Name is 1-50 characters (CheckName);
// a name that is an existing one after Unicode normalisation and case
// folding (the user service's names.Key) is ErrNameTaken.
type RegisterRequest struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

// RegisterResponse carries the new user's id.
type RegisterResponse struct {
	ID int64 `json:"id"`
}

// LoginRequest checks a password and claims the user's single session for
// SessionID on GatewayID. Errors: ErrBadLogin, ErrSessionLive (policy
// reject), ErrLoginThrottled (too many failed logins of the account or
// from Remote: the password was not checked). With policy kick the previous
// live session, if any, is replaced and a kick naming it is published on
// subject.User(UserID) after the claim commits.
//
// A client that logged in before can prove itself with ResumeToken instead
// of Password: a hash lookup instead of a bcrypt check, so thousands of
// clients whose gateway died can come back at once.
type LoginRequest struct {
	UserID      int64  `json:"user_id"`
	Password    string `json:"password,omitempty"`
	ResumeToken string `json:"resume_token,omitempty"`
	GatewayID   string `json:"gateway_id"`
	SessionID   string `json:"session_id"`
	// Remote is the client's address as the gateway sees it: an IP
	// address, or host:port (the port is ignored); "" when unknown. Failed
	// password logins are throttled per address (an IPv6 address per /64)
	// as well as per account, and logged with it.
	Remote string `json:"remote,omitempty"`
	// Bundle, when set, asks the user service to read what a gateway
	// needs for its LOGIN_ACK after the claim and answer it with the login
	// (LoginResponse.Inbox, Lists): one round trip for the gateway instead
	// of four requests.
	Bundle *LoginBundle `json:"bundle,omitempty"`
}

// LoginBundle is what a login's answer should carry besides the login.
type LoginBundle struct {
	// InboxLimit > 0: the first page of the inbox after the acknowledged
	// seq, at most this many messages (offline.fetch).
	InboxLimit int `json:"inbox_limit,omitempty"`
	// Lists: the user's friends (friend.list) and groups (group.mine).
	Lists bool `json:"lists,omitempty"`
}

// MaxRemoteLen bounds LoginRequest.Remote.
const MaxRemoteLen = 128

// LoginResponse is a successful login.
type LoginResponse struct {
	Name string `json:"name"`
	// ResumeToken lets the client log in again without its password until
	// it expires or the session logs out explicitly. Every login gets a new
	// one: a resume rotates the token it used (that one stops working as
	// the new one is issued; the expiry stays that of the password login).
	ResumeToken string `json:"resume_token"`
	// Replaced is the session id that this login replaced, if one was live.
	Replaced string `json:"replaced,omitempty"`

	// What LoginRequest.Bundle asked for. Inbox is nil when it was not
	// read (not asked, the offline service did not answer, or the answer
	// would have been too large for one message): the gateway fetches it
	// itself. Lists is false when the lists were not read (then Friends,
	// Groups and Missing are empty): the gateway asks for them itself.
	// Missing names the lists that could not be read ("friends",
	// "groups"): the login goes on without them.
	Inbox   *FetchResponse `json:"inbox,omitempty"`
	Lists   bool           `json:"lists,omitempty"`
	Friends []Profile      `json:"friends,omitempty"`
	Groups  []Group        `json:"groups,omitempty"`
	Missing []string       `json:"missing,omitempty"`
}

// LookupRequest asks for the users with these ids.
type LookupRequest struct {
	IDs []int64 `json:"ids"`
}

// User is a public account record.
type User struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// LookupResponse lists the ids that exist; unknown ids are left out.
type LookupResponse struct {
	Users []User `json:"users"`
}

// GatewayBeat renews a gateway's presence lease for TTLMillis. Sessions on a
// gateway whose lease has expired count as offline: a killed gateway's users
// can log in again once its lease runs out.
type GatewayBeat struct {
	GatewayID string `json:"gateway_id"`
	TTLMillis int64  `json:"ttl_ms"`
}

// GatewayBeatResponse says whether the lease is new. After the first beat a
// new lease means the old one had expired (the gateway was cut off for
// longer than its TTL) and its sessions were ended: the gateway must drop
// the connections it still holds as logged in.
type GatewayBeatResponse struct {
	New bool `json:"new"`
}

// GatewayLeave ends every session of a gateway that is stopping.
type GatewayLeave struct {
	GatewayID string `json:"gateway_id"`
}

// KickNotice is the payload of a kind=kick message on subject.User: the
// session SessionID was replaced by a newer login and must close.
type KickNotice struct {
	SessionID string `json:"session_id"`
}

// ProfilesRequest asks for the name and online state of users.
type ProfilesRequest struct {
	IDs []int64 `json:"ids"`
}

// Profile is a user's public record with presence.
type Profile struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Online bool   `json:"online"`
}

// ProfilesResponse lists the ids that exist, in the order asked; unknown ids
// are left out.
type ProfilesResponse struct {
	Users []Profile `json:"users"`
}

// MaxProfiles is the most ids one ProfilesRequest or LookupRequest may name.
const MaxProfiles = 5000

// PresenceEvents is published on subject.Presence whenever users come online
// (a login that did not replace a live session) or go offline (logout,
// disconnect, gateway stopped, gateway lease expired).
type PresenceEvents struct {
	Events []PresenceEvent `json:"events"`
}

// PresenceEvent is one user's change.
type PresenceEvent struct {
	UserID int64 `json:"user_id"`
	Online bool  `json:"online"`
	// At is the time of the change (unix ms), so a consumer can keep the
	// latest of events that arrive out of order.
	At int64 `json:"at"`
}

// PresenceNotice is the payload of a kind=presence message on
// subject.User(uid): friend ID's state changed.
type PresenceNotice struct {
	ID     int64 `json:"id"`
	Online bool  `json:"online"`
	// At is the event's time (unix ms): notices from different friend
	// service instances can overtake each other; the newest wins.
	At int64 `json:"at"`
}

// SessionsRequest pages through the sessions the user service records for a
// gateway, in user id order after AfterUserID. A gateway that reconnected to
// NATS compares them with the connections it holds: a kick published while
// it was away was lost, and the replaced connection must close.
type SessionsRequest struct {
	GatewayID   string `json:"gateway_id"`
	AfterUserID int64  `json:"after_user_id"`
	Limit       int    `json:"limit"`
}

// SessionRef names a user's session.
type SessionRef struct {
	UserID    int64  `json:"user_id"`
	SessionID string `json:"session_id"`
	// Revoke (in a LogoutsRequest) also revokes the session's resume token:
	// an explicit logout, not a dropped connection.
	Revoke bool `json:"revoke,omitempty"`
}

// SessionsResponse is one page; More says whether another follows.
type SessionsResponse struct {
	Sessions []SessionRef `json:"sessions"`
	More     bool         `json:"more"`
}

// MaxSessionsPage bounds a SessionsRequest's Limit (about 60 bytes each, far
// under NATS's 1 MiB payload).
const MaxSessionsPage = 5000

// LogoutsRequest releases many sessions at once (a gateway batches the
// sessions of clients that disconnected). Each is removed only if it is
// still the one named: a kicked session logging out does not end its
// successor.
type LogoutsRequest struct {
	Sessions []SessionRef `json:"sessions"`
}

// MaxLogouts bounds a LogoutsRequest.
const MaxLogouts = 1000

// CodeLoginThrottled: login: too many failed logins of the account or from
// the address; the password was not checked. The message says when to
// retry (LoginThrottled, LoginRetryAfter).
const CodeLoginThrottled Code = "login_throttled"

// ErrLoginThrottled matches every LoginThrottled error (errors.Is).
var ErrLoginThrottled = &Error{Code: CodeLoginThrottled, Message: "too many failed logins; retry later"}

// loginThrottledFormat is the message of a LoginThrottled error, meant to be
// shown to the client as it is (wire errno 119).
const loginThrottledFormat = "too many failed logins; retry in %d s"

// LoginThrottled is the answer to a login refused for retry (rounded up to
// whole seconds, at least 1): "too many failed logins; retry in N s".
func LoginThrottled(retry time.Duration) *Error {
	return Errorf(CodeLoginThrottled, loginThrottledFormat, max(1, int64(math.Ceil(retry.Seconds()))))
}

// LoginRetryAfter returns how long a LoginThrottled error asks to wait; ok
// is false for any other error.
func LoginRetryAfter(err error) (retry time.Duration, ok bool) {
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeLoginThrottled {
		return 0, false
	}
	var s int64
	if _, err := fmt.Sscanf(e.Message, loginThrottledFormat, &s); err != nil || s < 1 {
		return time.Second, true
	}
	return time.Duration(s) * time.Second, true
}
