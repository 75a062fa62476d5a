package user

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// detached is a micro.Request that answers by publishing to the reply
// subject itself. endpoint.JSON answers from a runner goroutine after the
// micro handler has returned, and micro's own request records the outcome of
// Respond/Error in a field that its delivery goroutine reads for the stats
// once the handler returns: a data race. A detached request touches nothing
// micro reads, at the price of micro's stats not counting errors.
type detached struct {
	micro.Request
	nc *nats.Conn
}

func (d detached) Respond(data []byte, opts ...micro.RespondOpt) error {
	return d.publish(&nats.Msg{Data: data}, opts)
}

func (d detached) RespondJSON(v any, opts ...micro.RespondOpt) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %w", micro.ErrMarshalResponse, err)
	}
	return d.Respond(data, opts...)
}

func (d detached) Error(code, description string, data []byte, opts ...micro.RespondOpt) error {
	if code == "" || description == "" {
		return fmt.Errorf("%w: error code and description", micro.ErrArgRequired)
	}
	return d.publish(&nats.Msg{
		Header: nats.Header{
			micro.ErrorHeader:     []string{description},
			micro.ErrorCodeHeader: []string{code},
		},
		Data: data,
	}, opts)
}

func (d detached) publish(msg *nats.Msg, opts []micro.RespondOpt) error {
	for _, opt := range opts {
		opt(msg)
	}
	msg.Subject = d.Reply()
	if msg.Subject == "" {
		return nats.ErrMsgNoReply
	}
	if err := d.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("%w: %w", micro.ErrRespond, err)
	}
	return nil
}
