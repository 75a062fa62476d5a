package natsreq

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/shared/api"
)

// Call is api.Call through r: it sends req as JSON to subject and decodes
// the answer into resp (which may be nil). A service error comes back as
// *api.Error, a failure to get an answer wraps api.ErrUnavailable.
// idempotent calls are sent again after a lost attempt (see the package
// comment); the others once.
func Call(ctx context.Context, r *Requester, subject string, req, resp any, idempotent bool) error {
	data, err := api.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", subject, err)
	}
	msg, err := r.Request(ctx, subject, data, CallOpts{Idempotent: idempotent})
	if err != nil {
		return err
	}
	return api.Decode(subject, msg, resp)
}

// OnReconnect makes nc's reconnects call r.Reconnected, after whatever
// reconnect handler nc had (nats.go keeps one per connection).
func OnReconnect(nc *nats.Conn, r *Requester) {
	prev := nc.Opts.ReconnectedCB
	nc.SetReconnectHandler(func(nc *nats.Conn) {
		if prev != nil {
			prev(nc)
		}
		r.Reconnected()
	})
}
