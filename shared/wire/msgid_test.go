package wire_test

import (
	"fmt"
	"testing"

	"github.com/natter-chat/natter/shared/wire"
)

func TestMsgIDString(t *testing.T) {
	for id := wire.MsgID(1); id <= wire.MaxMsgID; id++ {
		if !id.Known() || id.String() == "" || id.String() == fmt.Sprintf("msgid(%d)", id) {
			t.Errorf("msgid %d has no name", int(id))
		}
	}
	for _, id := range []wire.MsgID{0, -1, wire.MaxMsgID + 1} {
		if id.Known() || id.String() != fmt.Sprintf("msgid(%d)", int(id)) {
			t.Errorf("msgid %d: Known %v, String %q", int(id), id.Known(), id.String())
		}
	}
}

func ExampleMsgID_String() {
	fmt.Println(wire.OneChat, wire.Reconnect, wire.MsgID(99))
	// Output: one_chat reconnect msgid(99)
}
