package session

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/natsreq"
)

// caller sends the gateway's service requests through one requester
// (shared/natsreq: no goroutine per request; idempotent requests are sent
// again after a lost NATS node or service instance) and counts them.
type caller struct {
	req *natsreq.Requester
	m   *Metrics
}

// call sends req to subj and decodes the answer into resp (nil: none),
// waiting at most until ctx ends. idempotent requests may be sent more
// than once (every store carries a cid).
func (c *caller) call(ctx context.Context, subj string, req, resp any, idempotent bool) error {
	data, err := api.Marshal(req)
	if err != nil {
		return err
	}
	start := time.Now()
	msg, err := c.req.Request(ctx, subj, data, natsreq.CallOpts{Idempotent: idempotent})
	if err == nil {
		err = api.Decode(subj, msg, resp)
	}
	c.m.observe(subj, time.Since(start), err)
	return err
}

// goCall sends data to subj and calls done with the decoded answer's error
// on the requester's goroutine (it must not block). decode turns the reply
// into the caller's response; it runs only for a reply.
func (c *caller) goCall(subj string, data []byte, idempotent bool, timeout time.Duration, done func(*nats.Msg, error)) {
	start := time.Now()
	err := c.req.Go(subj, data, natsreq.CallOpts{Idempotent: idempotent, Timeout: timeout}, func(msg *nats.Msg, err error) {
		if err == nil {
			if e := api.Decode(subj, msg, nil); e != nil {
				err = e
			}
		}
		c.m.observe(subj, time.Since(start), err)
		done(msg, err)
	})
	if err != nil {
		c.m.observe(subj, time.Since(start), err)
		done(nil, err)
	}
}
