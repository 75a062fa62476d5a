package wire

import "strconv"

// MsgID is a frame's "msgid". 1-10 are the original system's and keep its
// meaning exactly; 11 and up are natter's own (full dialect).
type MsgID int

// Message ids.
const (
	Login       MsgID = 1  // client: {"msgid":1,"id":N,"password":S}
	LoginAck    MsgID = 2  // server
	Loginout    MsgID = 3  // client: {"msgid":3}
	Reg         MsgID = 4  // client: {"msgid":4,"name":S,"password":S}
	RegAck      MsgID = 5  // server
	OneChat     MsgID = 6  // client: {"msgid":6,"toid":N,"msg":S}; server push
	AddFriend   MsgID = 7  // client: {"msgid":7,"friendid":N}
	CreateGroup MsgID = 8  // client: {"msgid":8,"groupname":S,"groupdesc":S}
	AddGroup    MsgID = 9  // client: {"msgid":9,"groupid":N}
	GroupChat   MsgID = 10 // client: {"msgid":10,"groupid":N,"msg":S}; server push

	Ping   MsgID = 11 // client: heartbeat
	Pong   MsgID = 12 // server: answer to Ping
	Ack    MsgID = 13 // client: delivery acknowledgement {"msgid":13,"seq":N}, cumulative
	Reply  MsgID = 14 // server: the answer to a request that has no ack of its own; "re" names it
	Kicked MsgID = 15 // server: this session was replaced by a newer login and is closed

	Presence     MsgID = 16 // server: a friend came online or went offline {"id":N,"state":"online"|"offline"}
	RemoveFriend MsgID = 17 // client: {"msgid":17,"friendid":N}
	ListFriends  MsgID = 18 // client: answered with a Reply carrying "friends"
	LeaveGroup   MsgID = 19 // client: {"msgid":19,"groupid":N}
	ListGroups   MsgID = 20 // client: answered with a Reply carrying "groups"
	ListMembers  MsgID = 21 // client: {"msgid":21,"groupid":N}, answered with a Reply carrying "users"

	// Reconnect (server, full dialect): go to another gateway. errno says
	// why: GatewayStopping (this one is draining or stopping) or ServerFull
	// (it holds --max-conns connections). The gateway closes the connection
	// right after it; everything before it was delivered, and a login
	// elsewhere with the resume token replays what was not acknowledged.
	Reconnect MsgID = 22
)

// names are the msgids' names, as the gateway's metrics label them.
var names = [...]string{
	Login:        "login",
	LoginAck:     "login_ack",
	Loginout:     "loginout",
	Reg:          "reg",
	RegAck:       "reg_ack",
	OneChat:      "one_chat",
	AddFriend:    "add_friend",
	CreateGroup:  "create_group",
	AddGroup:     "add_group",
	GroupChat:    "group_chat",
	Ping:         "ping",
	Pong:         "pong",
	Ack:          "ack",
	Reply:        "reply",
	Kicked:       "kicked",
	Presence:     "presence",
	RemoveFriend: "remove_friend",
	ListFriends:  "list_friends",
	LeaveGroup:   "leave_group",
	ListGroups:   "list_groups",
	ListMembers:  "list_members",
	Reconnect:    "reconnect",
}

// MaxMsgID is the highest msgid with a name.
const MaxMsgID = MsgID(len(names) - 1)

// Known reports whether m is one of the message ids above.
func (m MsgID) Known() bool { return m > 0 && m <= MaxMsgID && names[m] != "" }

// String is m's name in snake case ("one_chat"), or "msgid(N)" for an
// unknown one.
func (m MsgID) String() string {
	if !m.Known() {
		return "msgid(" + strconv.Itoa(int(m)) + ")"
	}
	return names[m]
}
