package natsreq_test

import (
	"encoding/json"
	"errors"
	"log"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/natsreq"
	"github.com/natter-chat/natter/shared/subject"
)

// A gateway's wiring: one Requester per NATS connection, re-sending after
// a reconnect from the connection's reconnect handler (chained with the
// handler already set), closed before the connection is drained. A store
// carries a cid, so it is idempotent; the answer is decoded in done,
// which must not block.
func Example() {
	nc, err := nats.Connect(nats.DefaultURL, nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Drain()
	r, err := natsreq.New(nc, natsreq.Options{
		Observe: func(res natsreq.Result) {
			log.Printf("%s: %s after %d attempts in %v", res.Subject, res.Outcome, res.Attempts, res.Duration)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	prev := nc.ReconnectHandler()
	nc.SetReconnectHandler(func(nc *nats.Conn) {
		if prev != nil {
			prev(nc)
		}
		r.Reconnected()
	})

	body, err := api.Marshal(api.StoreRequest{From: 1, To: []int64{2}, CID: "c-1", Body: json.RawMessage(`{"text":"hi"}`)})
	if err != nil {
		log.Fatal(err)
	}
	stored := make(chan error, 1)
	err = r.Go(subject.OfflineStore, body, natsreq.CallOpts{Idempotent: true}, func(m *nats.Msg, err error) {
		if err != nil { // errors.Is(err, api.ErrUnavailable)
			stored <- err
			return
		}
		if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
			stored <- &api.Error{Code: api.Code(code), Message: m.Header.Get(micro.ErrorHeader)}
			return
		}
		var resp api.StoreResponse
		stored <- json.Unmarshal(m.Data, &resp)
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := <-stored; errors.Is(err, api.ErrUnavailable) {
		log.Print("offline service unavailable: ", err)
	}
}
