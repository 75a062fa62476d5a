package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/shared/wire"
)

// The store codec: how a gateway or the group service asks the offline
// service to store a chat, and its answer. One request shape,
//
//	{"from":N,"to":[N,...],"cid":"...","body":{...}}
//
// (cid left out when empty) is the JSON of StoreRequest, written by
// AppendStoreRequest without re-scanning the body and read by
// DecodeStoreRequest with one check of the body; the answer
// {"mid":"...","duplicate":true} (duplicate left out when false) is
// written by AppendStoreResponse and read by DecodeStoreResponse. Anything
// in another shape (a hand-written request, fields in another order) is
// read by encoding/json, with the same checks.

// AppendStoreRequest appends a store request to dst. body must be one
// compact JSON object (as a gateway builds it; DecodeStoreRequest compacts
// anything else, at a cost).
func AppendStoreRequest(dst []byte, from int64, to []int64, cid string, body []byte) []byte {
	dst = append(dst, `{"from":`...)
	dst = strconv.AppendInt(dst, from, 10)
	dst = append(dst, `,"to":[`...)
	for i, u := range to {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, u, 10)
	}
	dst = append(dst, ']')
	if cid != "" {
		dst = append(dst, `,"cid":`...)
		dst = wire.AppendString(dst, cid)
	}
	dst = append(dst, `,"body":`...)
	dst = append(dst, body...)
	return append(dst, '}')
}

// DecodeStoreRequest reads a store request and checks what the codec owns:
// the cid is at most MaxCIDLen bytes, the body one JSON object of at most
// MaxBodyLen bytes, valid UTF-8. The body comes back compact, as
// json.Compact writes it (so what is stored is byte for byte what fetches
// and pushes carry); it aliases data when data had it compact already.
// Errors are *Error with CodeBadRequest. From and To are not checked.
func DecodeStoreRequest(data []byte) (StoreRequest, error) {
	req, ok := scanStoreRequest(data)
	// The scan only cut the body out: unless it is valid JSON on its own
	// (not "{...},"more":{...}"), encoding/json reads the request.
	if ok = ok && json.Valid(req.Body); !ok {
		req = StoreRequest{}
		if err := json.Unmarshal(data, &req); err != nil {
			return StoreRequest{}, Errorf(CodeBadRequest, "malformed store request: %v", err)
		}
	}
	if len(req.CID) > MaxCIDLen {
		return StoreRequest{}, Errorf(CodeBadRequest, "cid longer than %d bytes", MaxCIDLen)
	}
	body, err := checkBody(req.Body, ok)
	if err != nil {
		return StoreRequest{}, err
	}
	req.Body = body
	return req, nil
}

// checkBody checks a chat body and returns it compact; valid says b is
// known to be valid JSON.
func checkBody(b []byte, valid bool) ([]byte, error) {
	if len(b) > MaxBodyLen {
		return nil, Errorf(CodeBadRequest, "body longer than %d bytes", MaxBodyLen)
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, Errorf(CodeBadRequest, "body must be a JSON object")
	}
	if !utf8.Valid(b) {
		return nil, Errorf(CodeBadRequest, "body is not valid UTF-8")
	}
	if !valid && !json.Valid(b) {
		return nil, Errorf(CodeBadRequest, "body is not valid JSON")
	}
	if isCompact(b) {
		return b, nil
	}
	var c bytes.Buffer
	if err := json.Compact(&c, b); err != nil {
		return nil, Errorf(CodeBadRequest, "body is not valid JSON")
	}
	return c.Bytes(), nil
}

// isCompact reports whether valid JSON b has no whitespace outside its
// strings, as json.Compact leaves it.
func isCompact(b []byte) bool {
	in, esc := false, false
	for _, c := range b {
		switch {
		case esc:
			esc = false
		case in && c == '\\':
			esc = true
		case c == '"':
			in = !in
		case !in && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return true
}

// scanStoreRequest reads AppendStoreRequest's shape; ok is false for
// anything else. The body is only cut out, not checked.
func scanStoreRequest(b []byte) (req StoreRequest, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"from":`))
	if !ok {
		return req, false
	}
	if req.From, rest, ok = cutInt(rest); !ok {
		return req, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"to":[`)); !ok {
		return req, false
	}
	req.To = []int64{}
	for first := true; len(rest) > 0 && rest[0] != ']'; first = false {
		if !first {
			if rest[0] != ',' {
				return req, false
			}
			rest = rest[1:]
		}
		var u int64
		if u, rest, ok = cutInt(rest); !ok {
			return req, false
		}
		req.To = append(req.To, u)
	}
	if rest, ok = bytes.CutPrefix(rest, []byte("]")); !ok {
		return req, false
	}
	if after, found := bytes.CutPrefix(rest, []byte(`,"cid":"`)); found {
		end := bytes.IndexByte(after, '"')
		if end < 0 || bytes.IndexByte(after[:end], '\\') >= 0 || !utf8.Valid(after[:end]) {
			return req, false // escapes: let encoding/json decode them
		}
		for _, c := range after[:end] {
			if c < 0x20 {
				return req, false
			}
		}
		req.CID, rest = string(after[:end]), after[end+1:]
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"body":`)); !ok {
		return req, false
	}
	body, ok := bytes.CutSuffix(rest, []byte("}"))
	if !ok || len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return req, false
	}
	req.Body = body
	return req, true
}

// AppendStoreResponse appends the answer to a store to dst. mid must need
// no JSON escaping (a UUID).
func AppendStoreResponse(dst []byte, mid string, duplicate bool) []byte {
	dst = append(dst, `{"mid":"`...)
	dst = append(dst, mid...)
	if duplicate {
		return append(dst, `","duplicate":true}`...)
	}
	return append(dst, `"}`...)
}

// DecodeStoreResponse reads the answer to a store.
func DecodeStoreResponse(data []byte) (StoreResponse, error) {
	if rest, ok := bytes.CutPrefix(data, []byte(`{"mid":"`)); ok {
		end := bytes.IndexByte(rest, '"')
		if end >= 0 && bytes.IndexByte(rest[:end], '\\') < 0 {
			switch string(rest[end:]) {
			case `"}`:
				return StoreResponse{MID: string(rest[:end])}, nil
			case `","duplicate":true}`:
				return StoreResponse{MID: string(rest[:end]), Duplicate: true}, nil
			}
		}
	}
	var r StoreResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return StoreResponse{}, fmt.Errorf("decode store response: %w", err)
	}
	return r, nil
}

// CallStore sends req (AppendStoreRequest's) to subject and reads the
// answer, as Call does: a service error comes back as *Error, a transport
// failure wraps ErrUnavailable.
func CallStore(ctx context.Context, nc *nats.Conn, subject string, req []byte) (StoreResponse, error) {
	msg, err := nc.RequestWithContext(ctx, subject, req)
	if err != nil {
		return StoreResponse{}, fmt.Errorf("%s: %w: %w", subject, ErrUnavailable, err)
	}
	return DecodeStoreAnswer(msg)
}

// DecodeStoreAnswer reads a store's answer message: a service error as
// *Error, else the response.
func DecodeStoreAnswer(msg *nats.Msg) (StoreResponse, error) {
	if e := ErrorFromHeader(msg.Header); e != nil {
		return StoreResponse{}, e
	}
	return DecodeStoreResponse(msg.Data)
}
