package manifest

import (
	"fmt"
	"strings"

	"github.com/natter-chat/natter/shared/subject"
)

// Role is one NATS user of the deployment: the gateways, or one service.
// Its permissions are allow lists built from shared/subject; everything
// else is denied.
type Role struct {
	// Name is the NATS user name, the --nats-user of the role's binary and
	// the key of its password in the natter-nats-auth Secret.
	Name string
	// Binary is the natter binary that connects as this user.
	Binary string
	// Publish and Subscribe are the subjects the role may publish to and
	// subscribe to (NATS wildcards allowed).
	Publish, Subscribe []string
	// Responds lets the role answer the requests it receives
	// (allow_responses: a reply subject may be published to once, within
	// two minutes of the request): every micro service needs it.
	Responds bool
}

// PasswordEnv is the environment variable through which the NATS server's
// configuration (auth.conf) gets the role's password.
func (r Role) PasswordEnv() string { return "NATS_PASSWORD_" + strings.ToUpper(r.Name) }

// Subjects every role needs for its part of request/reply and discovery.
const (
	// Inboxes are where requesters get their replies (nats.go's request
	// multiplexer subscribes _INBOX.<nuid>.*).
	Inboxes = "_INBOX.>"
	// Discovery is micro's $SRV.PING/INFO/STATS[.<name>[.<id>]]: every
	// service subscribes to it (and answers through Responds).
	Discovery = "$SRV.>"
)

// UserSubjects matches subject.User(uid) for every uid.
func UserSubjects() string {
	s := subject.User(0)
	return s[:len(s)-1] + "*"
}

// Roles returns the NATS users of the deployment, gateway first, with what
// each binary publishes and subscribes to (see the subject catalogue in
// shared/subject and the table in docs/ARCHITECTURE.md).
func Roles() []Role {
	return []Role{
		{
			Name: "gateway", Binary: "natter-gateway",
			Publish: []string{
				subject.UserRegister, subject.UserLogin, subject.UserLogout, subject.UserLogouts,
				subject.UserLookup, subject.UserGatewayBeat, subject.UserGatewayLeave, subject.UserSessions,
				subject.OfflineStore, subject.OfflineFetch, subject.OfflineAck,
				subject.FriendAdd, subject.FriendRemove, subject.FriendList,
				subject.GroupCreate, subject.GroupJoin, subject.GroupLeave, subject.GroupMine,
				subject.GroupMembers, subject.GroupSend,
			},
			// Pushes and control for the users it holds, and its replies.
			Subscribe: []string{UserSubjects(), Inboxes},
		},
		{
			Name: subject.UserService, Binary: "natter-user",
			// Kicks to the replaced session's gateway; presence events.
			Publish: []string{UserSubjects(), subject.Presence},
			Subscribe: []string{
				subject.UserRegister, subject.UserLogin, subject.UserLogout, subject.UserLogouts,
				subject.UserLookup, subject.UserProfiles, subject.UserSessions,
				subject.UserGatewayBeat, subject.UserGatewayLeave, Discovery,
			},
			Responds: true,
		},
		{
			Name: subject.OfflineService, Binary: "natter-offline",
			// Pushes of stored messages to the recipients' gateways.
			Publish:   []string{UserSubjects()},
			Subscribe: []string{subject.OfflineStore, subject.OfflineFetch, subject.OfflineAck, Discovery},
			Responds:  true,
		},
		{
			Name: subject.FriendService, Binary: "natter-friend",
			// Presence pushes to friends; names and states from the user service.
			Publish: []string{UserSubjects(), subject.UserProfiles},
			Subscribe: []string{
				subject.FriendAdd, subject.FriendRemove, subject.FriendList,
				subject.Presence, Discovery, Inboxes,
			},
			Responds: true,
		},
		{
			Name: subject.GroupService, Binary: "natter-group",
			// One batched store per group chat; members' names and states.
			Publish: []string{subject.OfflineStore, subject.UserProfiles},
			Subscribe: []string{
				subject.GroupCreate, subject.GroupJoin, subject.GroupLeave, subject.GroupMine,
				subject.GroupMembers, subject.GroupSend, Discovery, Inboxes,
			},
			Responds: true,
		},
	}
}

// AuthConf is deployments/k8s/base/nats/auth.conf: the NATS authorization
// block with one user per role, its password taken from the role's
// PasswordEnv.
func AuthConf() string {
	var b strings.Builder
	b.WriteString(`# natter's NATS users and their permissions, one user per role.
#
# GENERATED from shared/subject by deployments/k8s/manifest (natsauth.go):
# do not edit. After changing subjects or roles, regenerate it with
#
#     go test ./deployments/k8s/manifest -run TestAuthConf -update
#
# Only what is listed is allowed. Requesters subscribe to _INBOX.> for their
# replies; services answer through allow_responses (a reply subject of a
# request they received, once, within 2 minutes) and subscribe to $SRV.>
# for micro discovery. Passwords come from the environment (NATS_PASSWORD_*,
# set from the natter-nats-auth Secret by the StatefulSet).
authorization {
  users: [
`)
	for _, r := range Roles() {
		fmt.Fprintf(&b, "    # %s\n", r.Binary)
		fmt.Fprintf(&b, "    {\n      user: %q\n      password: $%s\n      permissions: {\n", r.Name, r.PasswordEnv())
		fmt.Fprintf(&b, "        publish: { allow: %s }\n", confList(r.Publish, 8))
		fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", confList(r.Subscribe, 8))
		if r.Responds {
			b.WriteString("        allow_responses: true\n")
		}
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

// confList formats subjects as a NATS configuration list, quoted (a bare $
// would start a variable), one a line, indented by indent.
func confList(subjects []string, indent int) string {
	pad := strings.Repeat(" ", indent)
	var b strings.Builder
	b.WriteString("[\n")
	for _, s := range subjects {
		fmt.Fprintf(&b, "%s  %q\n", pad, s)
	}
	b.WriteString(pad + "]")
	return b.String()
}
