package wire

// Errno is a reply's "errno". 0 is success. 1 and 2 keep the original
// system's per-msgid meanings; natter's own errors are 100 and up, so they
// never collide with the original's.
type Errno int

// Error numbers.
const (
	OK Errno = 0

	// The original's, valid in LOGIN_ACK and REG_ACK.
	LoginInvalid Errno = 1 // LOGIN_ACK: "id or password is invalid!"
	LoginInUse   Errno = 2 // LOGIN_ACK: "this account is using, input another!"
	RegFailed    Errno = 1 // REG_ACK: the name is taken

	BadJSON       Errno = 100 // the frame is not a JSON object
	BadField      Errno = 101 // a field is missing, of the wrong type or out of range
	UnknownMsgID  Errno = 102
	NotLoggedIn   Errno = 103
	FrameTooLarge Errno = 104 // the connection is closed after this reply
	NoSuchUser    Errno = 105
	// 106 meant "not implemented" before friends and groups existed; unused.
	AlreadyLoggedIn Errno = 107
	SessionReplaced Errno = 108 // sent with Kicked
	Flood           Errno = 109 // too many frames; this one was dropped
	Unavailable     Errno = 110 // a service did not answer; retry
	Internal        Errno = 111
	BadRegistration Errno = 112 // REG: name or password out of range
	GatewayStopping Errno = 113 // the gateway is draining or shutting down; reconnect (with Reconnect)
	// 114 is reserved (slow clients are cut off without a reply).
	NotMember      Errno = 115 // not a member of the group
	NoSuchGroup    Errno = 116
	SessionExpired Errno = 117 // the gateway lost its presence lease; log in again
	ServerFull     Errno = 118 // the gateway holds its maximum of connections (with Reconnect); try another
	// LoginThrottled (LOGIN_ACK): too many failed logins of this account or
	// from this address; the password was not checked. errmsg says when to
	// retry: "too many failed logins; retry in N s".
	LoginThrottled Errno = 119
	// InboxFull (REPLY to ONE_CHAT or GROUP_CHAT): the recipient's inbox
	// (every other member's, for a group) holds its limit of
	// unacknowledged messages or bytes; nothing was stored. Retry once the
	// recipient has read.
	InboxFull Errno = 120
	// SendRate (REPLY to ONE_CHAT or GROUP_CHAT): the sender passed its byte
	// rate; nothing was stored. Retry later (the same cid is safe).
	SendRate Errno = 121
)

// Original error messages, byte for byte.
const (
	MsgLoginInvalid = "id or password is invalid!"
	MsgLoginInUse   = "this account is using, input another!"
)
