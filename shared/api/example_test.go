package api_test

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natter-chat/natter/shared/api"
)

// A service error travels in micro's error headers and comes back as the
// same *api.Error, which errors.Is matches against the sentinels.
func ExampleErrorFromHeader() {
	code, desc := api.ErrNameTaken.Header()
	h := nats.Header{}
	h.Set(micro.ErrorCodeHeader, code)
	h.Set(micro.ErrorHeader, desc)

	err := api.ErrorFromHeader(h)
	fmt.Println(code, desc)
	fmt.Println(errors.Is(err, api.ErrNameTaken))
	// Output:
	// 409 name_taken: name taken
	// true
}

// A store request is appended by hand on the gateway's hot path and
// decoded, checked, by the offline service.
func ExampleAppendStoreRequest() {
	data := api.AppendStoreRequest(nil, 1, []int64{2, 3}, "c-1", []byte(`{"msg": "hi"}`))
	fmt.Println(string(data))
	req, err := api.DecodeStoreRequest(data)
	fmt.Println(req.From, req.To, req.CID, string(req.Body), err)
	// Output:
	// {"from":1,"to":[2,3],"cid":"c-1","body":{"msg": "hi"}}
	// 1 [2 3] c-1 {"msg":"hi"} <nil>
}
