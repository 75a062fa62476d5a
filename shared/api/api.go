// Package api is the contract between gateways and services: the JSON
// request and response bodies of every service endpoint, the typed errors a
// service answers with, Call, which sends a request and turns a service
// error back into an *Error that errors.Is can match, and CheckName, the
// rule for user and group names.
//
// Services answer errors with micro's error headers, as the NATS micro
// specification (ADR-32) has them: Nats-Service-Error-Code is a number
// (Code.Number, HTTP-like: 400, 404, 503, ...) and Nats-Service-Error the
// description, which starts with the code's word ("bad_login: id or
// password is invalid"), so that a caller in any language gets a number
// and natter's callers get the word back (ErrorFromHeader).
package api

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Code classifies a service error. Only the gateway maps codes to wire errno
// values; internal text never reaches a client.
type Code string

// Error codes answered by services.
const (
	CodeBadRequest  Code = "bad_request"  // a field is missing, of the wrong type or out of range
	CodeNotFound    Code = "not_found"    // an id that does not exist
	CodeNameTaken   Code = "name_taken"   // register: the name is in use
	CodeBadLogin    Code = "bad_login"    // login: unknown id or wrong password
	CodeSessionLive Code = "session_live" // login: policy reject and the user is online elsewhere
	CodeBusy        Code = "busy"         // the service sheds load; retry later
	CodeInboxFull   Code = "inbox_full"   // store: the recipient's inbox holds its limit of unacknowledged messages
	CodeSendRate    Code = "send_rate"    // store: the sender passed its byte rate; retry later
	CodeInternal    Code = "internal"     // anything else; details are only in the service's log
)

// numbers are the codes' numbers on the wire, one each (so a number
// decodes to one word).
var numbers = map[Code]int{
	CodeBadRequest:     400,
	CodeBadLogin:       401,
	CodeNotFound:       404,
	CodeNameTaken:      409,
	CodeSessionLive:    423,
	CodeLoginThrottled: 429,
	CodeInternal:       500,
	CodeBusy:           503,
	CodeInboxFull:      507,
	CodeSendRate:       509,
}

// Number is c as Nats-Service-Error-Code carries it: a number, as ADR-32
// says. A code without a number of its own (a word this version does not
// know) is 500.
func (c Code) Number() int {
	if n, ok := numbers[c]; ok {
		return n
	}
	if n, err := strconv.Atoi(string(c)); err == nil && n > 0 {
		return n
	}
	return numbers[CodeInternal]
}

// canonical is c as a word: a Code holding a known number (built from a
// raw header) is that number's word.
func (c Code) canonical() Code {
	if n, err := strconv.Atoi(string(c)); err == nil {
		for w, wn := range numbers {
			if wn == n {
				return w
			}
		}
	}
	return c
}

// Error is a service error as seen by a caller.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Is matches any *Error with the same Code, so callers write
// errors.Is(err, api.ErrNameTaken). A Code holding the number (400) is the
// same as its word (bad_request).
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code.canonical() == e.Code.canonical()
}

// Header returns e as micro's error headers carry it (ADR-32): the code's
// number, and a description that starts with the code's word.
func (e *Error) Header() (code, description string) {
	c := e.Code.canonical()
	return strconv.Itoa(c.Number()), string(c) + ": " + e.Message
}

// ErrorFromHeader returns the service error that h (an answer's headers)
// carries, nil for an answer that is not an error. It reads what Header
// writes, and also a bare number (any micro service: the number's word, or
// the number itself when it has none) and a word in the code header (an
// older natter answering during a rolling upgrade).
func ErrorFromHeader(h nats.Header) *Error {
	code := h.Get(micro.ErrorCodeHeader)
	if code == "" {
		return nil
	}
	desc := h.Get(micro.ErrorHeader)
	n, err := strconv.Atoi(code)
	if err != nil { // a word: an older natter
		return &Error{Code: Code(code), Message: desc}
	}
	if word, msg, ok := strings.Cut(desc, ": "); ok && isWord(word) {
		if c := Code(word); numbers[c] == n || numbers[c] == 0 {
			return &Error{Code: c, Message: msg}
		}
	}
	return &Error{Code: Code(code).canonical(), Message: desc}
}

// isWord reports whether s looks like a Code: lower-case letters and
// underscores.
func isWord(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && r != '_' {
			return false
		}
	}
	return true
}

// Sentinels for errors.Is.
var (
	ErrBadRequest  = &Error{Code: CodeBadRequest, Message: "bad request"}
	ErrNotFound    = &Error{Code: CodeNotFound, Message: "not found"}
	ErrNameTaken   = &Error{Code: CodeNameTaken, Message: "name taken"}
	ErrBadLogin    = &Error{Code: CodeBadLogin, Message: "id or password is invalid"}
	ErrSessionLive = &Error{Code: CodeSessionLive, Message: "user is online elsewhere"}
	ErrBusy        = &Error{Code: CodeBusy, Message: "busy"}
	ErrInternal    = &Error{Code: CodeInternal, Message: "internal error"}
	// ErrDatabaseUnavailable answers a request the database could not take
	// now (a restart, a failover): the caller retries, a client with the
	// same cid.
	ErrDatabaseUnavailable = &Error{Code: CodeBusy, Message: "database unavailable; retry"}
	// ErrStorageFull answers a store while the offline service's storage
	// is full (the disk, or the database's table space): nothing was
	// stored; the caller retries later, a client with the same cid.
	// Fetches and acks go on.
	ErrStorageFull = &Error{Code: CodeBusy, Message: "storage full; retry later"}
	// ErrInboxFull answers a store whose recipient (every recipient, for a
	// group message) holds its limit of unacknowledged messages or bytes.
	ErrInboxFull = &Error{Code: CodeInboxFull, Message: "recipient's inbox is full"}
	// ErrSendRate answers a store past the sender's byte rate.
	ErrSendRate = &Error{Code: CodeSendRate, Message: "sending too fast; retry later"}
)

// Empty is the answer of every endpoint that has nothing to say but
// success: {}.
type Empty struct{}

// Errorf returns an *Error with code c and a formatted message.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

// ErrUnavailable wraps failures to reach a service at all (no responders,
// timeout, connection closed).
var ErrUnavailable = errors.New("service unavailable")

// Call sends req as JSON to subject and decodes the reply into resp (which
// may be nil). A service error comes back as *Error; a transport failure
// wraps ErrUnavailable.
func Call(ctx context.Context, nc *nats.Conn, subject string, req, resp any) error {
	data, err := Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", subject, err)
	}
	msg, err := nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", subject, ErrUnavailable, err)
	}
	return Decode(subject, msg, resp)
}
