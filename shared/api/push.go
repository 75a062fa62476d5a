package api

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// The push codec: how the offline service publishes a new inbox entry on
// subject.User and how the gateway reads it. One shape,
//
//	{"seq":N,"mid":"...","from":N,"body":{...}}
//
// the JSON of InboxMessage, written by AppendPush without re-scanning the
// body and read by DecodePush without scanning it. Anything in another
// shape (a hand-written publish, an older writer) is read by encoding/json.

// AppendPush appends the push of one inbox entry to dst. body must be one
// compact JSON object (the offline service stores bodies in that form) and
// mid must need no JSON escaping (a UUID).
func AppendPush(dst []byte, seq int64, mid string, from int64, body []byte) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"mid":"`...)
	dst = append(dst, mid...)
	dst = append(dst, `","from":`...)
	dst = strconv.AppendInt(dst, from, 10)
	dst = append(dst, `,"body":`...)
	dst = append(dst, body...)
	return append(dst, '}')
}

// DecodePush reads a push. The body aliases data.
func DecodePush(data []byte) (InboxMessage, error) {
	if m, ok := scanPush(data); ok {
		return m, nil
	}
	var m InboxMessage
	err := json.Unmarshal(data, &m)
	return m, err
}

// scanPush reads AppendPush's shape; ok is false for anything else.
func scanPush(b []byte) (m InboxMessage, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"seq":`))
	if !ok {
		return m, false
	}
	if m.Seq, rest, ok = cutInt(rest); !ok {
		return m, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"mid":"`)); !ok {
		return m, false
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return m, false // escapes: let encoding/json decode them
	}
	m.MID, rest = string(rest[:end]), rest[end+1:]
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"from":`)); !ok {
		return m, false
	}
	if m.From, rest, ok = cutInt(rest); !ok {
		return m, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"body":`)); !ok {
		return m, false
	}
	body, ok := bytes.CutSuffix(rest, []byte("}"))
	if !ok || len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return m, false
	}
	m.Body = body
	return m, true
}

// cutInt reads a decimal integer at the start of b.
func cutInt(b []byte) (int64, []byte, bool) {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(string(b[:i]), 10, 64)
	if err != nil {
		return 0, b, false
	}
	return n, b[i:], true
}
