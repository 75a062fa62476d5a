package offline

import (
	"encoding/json"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// detached is a micro.Request that is safe to answer from any goroutine.
//
// micro's own Request records a failed answer in a field that micro reads,
// unlocked, right after the handler returns (for its error statistics), so
// answering it from another goroutine - a batch writer, or a goroutine of
// endpoint.Runner - is a data race (go test -race finds it). detached
// publishes the answer to the reply subject itself, exactly as micro does,
// and never touches micro's request. The price: micro's num_errors does not
// count these answers.
type detached struct {
	micro.Request
	nc *nats.Conn
}

// detach wraps h so it receives detached requests.
func detach(nc *nats.Conn, h micro.Handler) micro.Handler {
	return micro.HandlerFunc(func(m micro.Request) { h.Handle(detached{Request: m, nc: nc}) })
}

func (d detached) publish(msg *nats.Msg, opts []micro.RespondOpt) error {
	for _, opt := range opts {
		opt(msg)
	}
	if d.Reply() == "" {
		return nats.ErrMsgNoReply
	}
	msg.Subject = d.Reply()
	return d.nc.PublishMsg(msg)
}

// Respond answers data.
func (d detached) Respond(data []byte, opts ...micro.RespondOpt) error {
	return d.publish(&nats.Msg{Data: data}, opts)
}

// RespondJSON answers v as JSON.
func (d detached) RespondJSON(v any, opts ...micro.RespondOpt) error {
	data, err := json.Marshal(v)
	if err != nil {
		return micro.ErrMarshalResponse
	}
	return d.Respond(data, opts...)
}

// Error answers a service error in micro's headers.
func (d detached) Error(code, description string, data []byte, opts ...micro.RespondOpt) error {
	if code == "" {
		return micro.ErrArgRequired
	}
	if description == "" {
		return micro.ErrArgRequired
	}
	return d.publish(&nats.Msg{
		Header: nats.Header{
			micro.ErrorHeader:     []string{description},
			micro.ErrorCodeHeader: []string{code},
		},
		Data: data,
	}, opts)
}
