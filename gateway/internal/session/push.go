package session

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/natter-chat/natter/shared/api"
)

// decodePush reads an inbox push from the offline service. The service
// writes every push in one shape, {"seq":N,"mid":"...","from":N,"body":{...}}
// (services/offline appendPush), which is read here without a JSON scan of
// the body: emitLocked parses the body anyway, and skips one it cannot.
// Anything in another shape goes through encoding/json.
func decodePush(data []byte) (api.InboxMessage, error) {
	if m, ok := scanPush(data); ok {
		return m, nil
	}
	var m api.InboxMessage
	err := json.Unmarshal(data, &m)
	return m, err
}

// scanPush reads the offline service's shape of a push; ok is false for
// anything else.
func scanPush(b []byte) (m api.InboxMessage, ok bool) {
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
