package api

import (
	"encoding/json"
	"fmt"
)

// A store of several messages (subject.OfflineStoreMany): a gateway's
// chats that queued while the one before was being stored, sent together.
// The offline service stores each as a store request of its own, in the
// order given for each recipient, and answers once every one has an
// answer: the results in the same order.
//
//	{"messages":[<store request>,...]}
//	{"results":[{"mid":"..."},{"mid":"...","duplicate":true},{"code":"busy","message":"..."}]}

// MaxStoreMany is the most messages one request carries.
const MaxStoreMany = 256

// AppendStoreMany appends a store of the given requests (each one from
// AppendStoreRequest) to dst.
func AppendStoreMany(dst []byte, reqs [][]byte) []byte {
	dst = append(dst, `{"messages":[`...)
	for i, r := range reqs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, r...)
	}
	return append(dst, "]}"...)
}

// DecodeStoreMany returns the store requests of a store of several, each
// still encoded (DecodeStoreRequest reads it).
func DecodeStoreMany(data []byte) ([]json.RawMessage, error) {
	var req struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, Errorf(CodeBadRequest, "malformed store request: %v", err)
	}
	if len(req.Messages) == 0 || len(req.Messages) > MaxStoreMany {
		return nil, Errorf(CodeBadRequest, "messages must list 1 to %d store requests, got %d", MaxStoreMany, len(req.Messages))
	}
	return req.Messages, nil
}

// StoreResult is the answer to one message of a store of several: its mid,
// or the error that refused it.
type StoreResult struct {
	MID       string `json:"mid,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	// Refused: as StoreResponse.Refused.
	Refused []int64 `json:"refused,omitempty"`
	Code    Code    `json:"code,omitempty"`
	Message string  `json:"message,omitempty"`
}

// Err is the result's error as a *Error; nil when the message was stored.
func (r StoreResult) Err() error {
	if r.Code == "" {
		return nil
	}
	return &Error{Code: r.Code, Message: r.Message}
}

// StoreManyResponse answers a store of several.
type StoreManyResponse struct {
	Results []StoreResult `json:"results"`
}

// DecodeStoreManyResponse reads the answer to a store of n messages.
func DecodeStoreManyResponse(data []byte, n int) ([]StoreResult, error) {
	var resp StoreManyResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("decode store answer: %w", err)
	}
	if len(resp.Results) != n {
		return nil, fmt.Errorf("decode store answer: %d results for %d messages", len(resp.Results), n)
	}
	return resp.Results, nil
}
