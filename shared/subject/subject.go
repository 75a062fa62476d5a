// Package subject builds every NATS subject natter uses. No other package
// formats a subject by hand, so this comment is the subject catalogue.
//
// Per-user delivery (published by services, subscribed by the gateway that
// holds the user's session; nobody subscribed means the user is not online
// here and the message waits in the inbox):
//
//	natter.u.<uid>                  pushes and control for user <uid>; the
//	                                Natter-Kind header says which: "msg" (an
//	                                inbox entry with its seq), "kick" (a newer
//	                                session replaced the one named),
//	                                "presence" (a friend came online or went
//	                                offline)
//
// Service requests (nats.go/micro endpoints, queue group = service name, so
// any number of instances share the load):
//
//	natter.svc.user.register        create an account
//	natter.svc.user.login           check a password and claim the session
//	natter.svc.user.logouts         release many sessions (a gateway's batch)
//	natter.svc.user.lookup          names of user ids (existence check)
//	natter.svc.user.gwbeat          a gateway renews its presence lease
//	natter.svc.user.gwleave         a gateway stops: its sessions end
//	natter.svc.offline.store        store a chat message in recipients' inboxes
//	natter.svc.offline.storemany    store several chat messages of one sender, in
//	                                order (a gateway's pipelined chats)
//	natter.svc.offline.fetch        read an inbox after a seq
//	natter.svc.offline.ack          acknowledge inboxes up to a seq (batched)
//	natter.svc.user.profiles        names and online state of user ids
//	natter.svc.user.sessions        the sessions a gateway holds, paged (for
//	                                reconciliation after a NATS reconnect)
//	natter.svc.friend.add           befriend (mutual)
//	natter.svc.friend.remove        unfriend (mutual)
//	natter.svc.friend.list          a user's friends with name and state
//	natter.svc.group.create         create a group; the creator joins as creator
//	natter.svc.group.join           join a group
//	natter.svc.group.leave          leave a group
//	natter.svc.group.mine           a user's groups with their members
//	natter.svc.group.members        one group's members
//	natter.svc.group.send           a group chat: checked and stored for every
//	                                other member through the offline service
//
// Events (plain publish):
//
//	natter.presence                 the user service publishes who came online
//	                                or went offline (api.PresenceEvents); the
//	                                friend service (queue group) coalesces them
//	                                and pushes kind=presence to online friends
//
// Discovery comes from micro: $SRV.PING, $SRV.INFO, $SRV.STATS.
package subject

import (
	"strconv"
	"strings"
)

const prefix = "natter."

// Service names as registered with micro; also the queue group names.
const (
	UserService    = "user"
	OfflineService = "offline"
	FriendService  = "friend"
	GroupService   = "group"
)

// Service request subjects.
const (
	UserRegister     = prefix + "svc.user.register"
	UserLogin        = prefix + "svc.user.login"
	UserLogouts      = prefix + "svc.user.logouts"
	UserLookup       = prefix + "svc.user.lookup"
	UserGatewayBeat  = prefix + "svc.user.gwbeat"
	UserGatewayLeave = prefix + "svc.user.gwleave"
	UserProfiles     = prefix + "svc.user.profiles"
	UserSessions     = prefix + "svc.user.sessions"

	FriendAdd    = prefix + "svc.friend.add"
	FriendRemove = prefix + "svc.friend.remove"
	FriendList   = prefix + "svc.friend.list"

	GroupCreate  = prefix + "svc.group.create"
	GroupJoin    = prefix + "svc.group.join"
	GroupLeave   = prefix + "svc.group.leave"
	GroupMine    = prefix + "svc.group.mine"
	GroupMembers = prefix + "svc.group.members"
	GroupSend    = prefix + "svc.group.send"

	// Presence carries api.PresenceEvents from the user service.
	Presence = prefix + "presence"

	OfflineStore     = prefix + "svc.offline.store"
	OfflineStoreMany = prefix + "svc.offline.storemany"
	OfflineFetch     = prefix + "svc.offline.fetch"
	OfflineAck       = prefix + "svc.offline.ack"
)

// User is the subject a gateway subscribes to for user uid while it holds
// that user's session.
func User(uid int64) string {
	return prefix + "u." + strconv.FormatInt(uid, 10)
}

// Header names and values on messages published to User subjects.
const (
	KindHeader   = "Natter-Kind"
	KindMsg      = "msg"
	KindKick     = "kick"
	KindPresence = "presence"
)

// ParseUser returns the uid of a User subject.
func ParseUser(subj string) (int64, bool) {
	const p = prefix + "u."
	if len(subj) <= len(p) || subj[:len(p)] != p {
		return 0, false
	}
	uid, err := strconv.ParseInt(subj[len(p):], 10, 64)
	return uid, err == nil
}

// ParseService splits a service request subject,
// natter.svc.<service>.<endpoint>, into its service and endpoint names
// (OfflineStore: "offline", "store"); ok is false for any other subject.
func ParseService(subj string) (service, endpoint string, ok bool) {
	rest, ok := strings.CutPrefix(subj, prefix+"svc.")
	if !ok {
		return "", "", false
	}
	service, endpoint, ok = strings.Cut(rest, ".")
	if !ok || service == "" || endpoint == "" {
		return "", "", false
	}
	return service, endpoint, true
}
