package api

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
)

// Decode turns a service's answer to a request on subject into resp (which
// may be nil): a service error carried in micro's error headers comes back
// as *Error, anything else is resp's JSON. Call uses it; so do callers that
// send requests their own way (shared/natsreq).
func Decode(subject string, msg *nats.Msg, resp any) error {
	if e := ErrorFromHeader(msg.Header); e != nil {
		return e
	}
	if resp == nil {
		return nil
	}
	if err := json.Unmarshal(msg.Data, resp); err != nil {
		return fmt.Errorf("decode %s reply: %w", subject, err)
	}
	return nil
}
