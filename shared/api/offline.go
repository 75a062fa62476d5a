package api

import "encoding/json"

// StoreRequest stores one chat message for its recipients. Body is the JSON
// object recipients receive (the gateway has already replaced identity
// fields with the session's). When CID is set, a second request with the same
// (From, CID) stores nothing and answers the first message's MID.
type StoreRequest struct {
	From int64           `json:"from"`
	To   []int64         `json:"to"`
	CID  string          `json:"cid,omitempty"`
	Body json.RawMessage `json:"body"`
}

// StoreResponse is answered only after the message is committed.
type StoreResponse struct {
	MID string `json:"mid"`
	// Duplicate is true when CID matched an earlier message.
	Duplicate bool `json:"duplicate,omitempty"`
	// Refused lists the recipients of a group message whose inbox was full
	// (ErrInboxFull): the message was stored for the others only. A store
	// refused for every recipient is answered ErrInboxFull instead.
	Refused []int64 `json:"refused,omitempty"`
}

// MaxCIDLen is the longest client message id accepted.
const MaxCIDLen = 64

// MaxBodyLen is the largest chat body (one-to-one or group) a service
// accepts, in bytes.
const MaxBodyLen = 64 << 10

// FetchRequest reads user UserID's inbox after seq After (exclusive), at most
// Limit entries in seq order. After < 0 means "after the acknowledged seq".
type FetchRequest struct {
	UserID int64 `json:"user_id"`
	After  int64 `json:"after"`
	Limit  int   `json:"limit"`
}

// FetchResponse is a page of an inbox.
type FetchResponse struct {
	Messages []InboxMessage `json:"messages"`
	// Acked is the user's acknowledged seq; Last the highest seq stored.
	Acked int64 `json:"acked"`
	Last  int64 `json:"last"`
}

// InboxMessage is one inbox entry: the message and its seq in this inbox.
// It is also the payload of a kind=msg push on subject.User.
type InboxMessage struct {
	Seq  int64           `json:"seq"`
	MID  string          `json:"mid"`
	From int64           `json:"from"`
	Body json.RawMessage `json:"body"`
}

// AckRequest acknowledges inboxes cumulatively. An ack above an inbox's last
// seq is clamped; an ack below the current acknowledged seq changes nothing.
type AckRequest struct {
	Acks []Ack `json:"acks"`
}

// Ack acknowledges UserID's inbox up to and including Seq.
type Ack struct {
	UserID int64 `json:"user_id"`
	Seq    int64 `json:"seq"`
}
