package chatclient

import (
	"errors"
	"testing"

	"github.com/natter-chat/natter/shared/wire"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line    string
		msgid   wire.MsgID
		field   string
		want    any
		wantErr error
		bad     bool
	}{
		{line: "chat:2:hello", msgid: wire.OneChat, field: "msg", want: "hello"},
		{line: "chat:2:a:b:c", msgid: wire.OneChat, field: "msg", want: "a:b:c"},
		{line: "  chat:2:spaces kept ", msgid: wire.OneChat, field: "msg", want: "spaces kept"},
		{line: "chat:2", bad: true},
		{line: "chat:x:hi", bad: true},
		{line: "chat:-1:hi", bad: true},
		{line: "chat:2:", bad: true},
		{line: "groupchat:7:hi all", msgid: wire.GroupChat, field: "groupid", want: int64(7)},
		{line: "addfriend:3", msgid: wire.AddFriend, field: "friendid", want: int64(3)},
		{line: "addfriend:", bad: true},
		{line: "addfriend:3x", bad: true},
		{line: "removefriend:3", msgid: wire.RemoveFriend, field: "friendid", want: int64(3)},
		{line: "creategroup:hikers:weekend: trips", msgid: wire.CreateGroup, field: "groupdesc", want: "weekend: trips"},
		{line: "creategroup:hikers", msgid: wire.CreateGroup, field: "groupdesc", want: ""},
		{line: "creategroup:", bad: true},
		{line: "addgroup:5", msgid: wire.AddGroup, field: "groupid", want: int64(5)},
		{line: "leavegroup:5", msgid: wire.LeaveGroup, field: "groupid", want: int64(5)},
		{line: "members:5", msgid: wire.ListMembers, field: "groupid", want: int64(5)},
		{line: "friends", msgid: wire.ListFriends},
		{line: "groups", msgid: wire.ListGroups},
		{line: "loginout", msgid: wire.Loginout},
		{line: "help", wantErr: ErrHelp},
		{line: "quit", wantErr: ErrQuit},
		{line: "hello there", bad: true},
		{line: "", bad: true},
	} {
		t.Run(tc.line, func(t *testing.T) {
			cmd, err := ParseCommand(tc.line)
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			case tc.bad:
				if err == nil {
					t.Fatalf("accepted: %+v", cmd.req)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if cmd.req["msgid"] != tc.msgid {
				t.Fatalf("msgid %v, want %v", cmd.req["msgid"], tc.msgid)
			}
			if tc.field != "" && cmd.req[tc.field] != tc.want {
				t.Fatalf("%s = %#v, want %#v", tc.field, cmd.req[tc.field], tc.want)
			}
			_, hasMsg := cmd.req["msg"]
			if cid, _ := cmd.req["cid"].(string); hasMsg != (cid != "") {
				t.Fatalf("cid %q on %v", cid, cmd.req)
			}
		})
	}
	a, _ := ParseCommand("chat:2:x")
	b, _ := ParseCommand("chat:2:x")
	if a.req["cid"] == b.req["cid"] {
		t.Fatal("two chats share a cid")
	}
}
