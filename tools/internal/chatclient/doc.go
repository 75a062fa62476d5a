// Package chatclient is natter's terminal client, `natter chat`: the
// original C++ client's menu and commands over the full dialect, with
// acknowledged delivery, automatic reconnection with resume tokens and
// exactly-once sending through client message ids.
//
// A Client owns one connection at a time to one of its gateway addresses.
// While the user is logged in, a lost connection is replaced with backoff
// and the session resumed with the login's resume token and the last seq
// shown, so nothing shown is shown again and nothing unshown is skipped.
// Commands go through an outbox that is sent in order once a session is up;
// chats carry a cid, so one resent after a lost reply is stored once.
package chatclient
