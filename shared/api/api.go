// Package api is the contract between gateways and services: the JSON
// request and response bodies of every service endpoint, the typed errors a
// service answers with, Call, which sends a request and turns a service
// error back into an *Error that errors.Is can match, and CheckName, the
// rule for user and group names.
//
// Services answer errors with micro's error headers (Nats-Service-Error-Code
// carries one of the Code values below, Nats-Service-Error a human text).
package api

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
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
	CodeInternal    Code = "internal"     // anything else; details are only in the service's log
)

// Error is a service error as seen by a caller.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Is matches any *Error with the same Code, so callers write
// errors.Is(err, api.ErrNameTaken).
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code
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
)

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
