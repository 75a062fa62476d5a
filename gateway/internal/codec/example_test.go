package codec_test

import (
	"fmt"
	"time"

	"github.com/natter-chat/natter/gateway/internal/codec"
	"github.com/natter-chat/natter/shared/wire"
)

// A chat frame from the client, from scanning to the sender's reply and
// the recipient's push.
func Example() {
	var f codec.Frame // one per connection's reader, reused
	frame := []byte(`{"msgid":6,"toid":2,"msg":"hello <ben>","reqid":"c1","cid":"k1"}`)
	if err := codec.Scan(frame, &f); err != nil {
		fmt.Println(codec.MsgMalformed)
		return
	}
	msgid, _ := f.Int("msgid")
	chat, err := f.CheckChat(wire.MsgID(msgid))
	if err != nil {
		fmt.Println(err) // errno wire.BadField
		return
	}
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	body := codec.AppendChatBody(nil, &f, wire.OneChat, 1, "ann", now)
	fmt.Printf("store for %d (cid %q): %s\n", chat.To, chat.CID, body)

	// The offline service stored it as mid 01JD..., seq 7 of user 2's inbox.
	reply := codec.AppendReply(nil, &codec.Reply{Re: wire.OneChat, ReqID: f.Raw("reqid"), MID: "01JD", HasMID: true})
	fmt.Printf("sender: %s\n", reply)
	push, _, _ := codec.AppendPush(nil, body, "01JD", 7)
	fmt.Printf("recipient: %s\n", push)
	legacy, _, _ := codec.AppendLegacyPush(nil, body)
	fmt.Printf("original client: %s\n", legacy)
	// Output:
	// store for 2 (cid "k1"): {"id":1,"msg":"hello <ben>","msgid":6,"name":"ann","time":"2026-11-21 10:00:00","toid":2}
	// sender: {"errmsg":"","errno":0,"mid":"01JD","msgid":14,"re":6,"reqid":"c1"}
	// recipient: {"id":1,"mid":"01JD","msg":"hello <ben>","msgid":6,"name":"ann","seq":7,"time":"2026-11-21 10:00:00","toid":2}
	// original client: {"id":1,"msg":"hello <ben>","msgid":6,"name":"ann","time":"2026-11-21 10:00:00","toid":2}
}

// Field errors carry the text the client is shown.
func ExampleFrame_Int() {
	var f codec.Frame
	_ = codec.Scan([]byte(`{"msgid":6,"toid":1.5}`), &f)
	_, err := f.Int("toid")
	fmt.Println(err)
	_, err = f.Int("groupid")
	fmt.Println(err)
	// Output:
	// field "toid" must be an integer
	// field "groupid" is missing
}

func ExampleAppendReply() {
	r := codec.Reply{Re: wire.Login, Errno: wire.LoginInvalid, Errmsg: wire.MsgLoginInvalid, ReqID: []byte(`"l1"`)}
	fmt.Printf("%s\n", codec.AppendReply(nil, &r))
	r.Legacy = true
	fmt.Printf("%s\n", codec.AppendReply(nil, &r))
	fmt.Printf("%s\n", codec.AppendPong(nil, []byte("7")))
	// Output:
	// {"errmsg":"id or password is invalid!","errno":1,"msgid":2,"reqid":"l1"}
	// {"errmsg":"id or password is invalid!","errno":1,"msgid":2}
	// {"msgid":12,"reqid":7}
}
