package manifest

import (
	"fmt"
	"strings"

	"github.com/natter-chat/natter/shared/natsconn"
	"github.com/natter-chat/natter/shared/natsreq"
	"github.com/natter-chat/natter/shared/subject"
)

// Role is one NATS user of the deployment: the gateways, one service, or
// the operators. Its permissions are allow lists built from shared/subject;
// everything else is denied.
type Role struct {
	// Name is the NATS user name, the --nats-user of the role's binary and
	// the key of its password in the natter-nats-auth Secret.
	Name string
	// Binary is the natter binary that connects as this user ("" for the
	// operators' nats CLI).
	Binary string
	// Note says what the operators' users are for (auth.conf's comment).
	Note string
	// Account is the NATS account of the user: "" for natter's (the
	// global account), SystemAccount for the server monitoring user.
	Account string
	// Publish and Subscribe are the subjects the role may publish to and
	// subscribe to (NATS wildcards allowed).
	Publish, Subscribe []string
	// Responds lets the role answer the requests it receives
	// (allow_responses: a reply subject may be published to up to
	// natsreq.DefaultMaxAttempts times, within two minutes of the
	// request): every micro service needs it. Not once: a requester re-sends
	// an unanswered idempotent request on the same reply subject, and both
	// copies may be answered (the server counts answers per reply subject).
	Responds bool
}

// PasswordEnv is the environment variable through which the NATS server's
// configuration (auth.conf) gets the role's password.
func (r Role) PasswordEnv() string {
	return "NATS_PASSWORD_" + strings.ToUpper(strings.ReplaceAll(r.Name, "-", "_"))
}

// clientName is the NATS client name the role connects with: its binary's
// name, or the operators' (natsconn.InboxPrefix derives the inbox from it).
func (r Role) clientName() string {
	if r.Binary != "" {
		return r.Binary
	}
	return OpsInboxPrefix[len(natsconn.DefaultInboxPrefix)+1:]
}

// Inbox is the pattern of the role's replies: its own inbox prefix
// (natsconn.InboxPrefix), so that no role can read another's replies - a
// login reply carries a resume token.
func (r Role) Inbox() string { return natsconn.InboxPrefix(r.clientName()) + ".>" }

// Subjects every role needs for its part of request/reply and discovery.
const (
	// Discovery is micro's $SRV.PING/INFO/STATS[.<name>[.<id>]]: every
	// service subscribes to it (and answers through Responds).
	Discovery = "$SRV.>"
	// OpsInboxPrefix is the inbox prefix the operators' nats CLI must use
	// (nats --inbox-prefix _INBOX.ops): the only replies they may read.
	OpsInboxPrefix = natsconn.DefaultInboxPrefix + ".ops"
	// SystemAccount is the NATS system account, where the servers answer
	// monitoring requests ($SYS.REQ.SERVER.PING.VARZ, ...).
	SystemAccount = "SYS"
)

// RouteUser is the user name NATS nodes present to each other on the
// cluster port; its password is the natter-nats-auth Secret's key route.
const RouteUser = "route"

// discoveryRequests are the micro discovery requests the operators may
// send: every verb, to every service or one ($SRV.PING, $SRV.INFO.user, ...).
func discoveryRequests() []string {
	var out []string
	for _, verb := range []string{"PING", "INFO", "STATS"} {
		out = append(out, "$SRV."+verb, "$SRV."+verb+".>")
	}
	return out
}

// monitoringVerbs are the servers' read-only monitoring requests in the
// system account (nats-server events.go); RELOAD, KICK, LDM and PROFILEZ
// are left out.
var monitoringVerbs = []string{"IDZ", "STATSZ", "VARZ", "SUBSZ", "CONNZ", "ROUTEZ", "GATEWAYZ", "LEAFZ",
	"ACCOUNTZ", "JSZ", "HEALTHZ", "EXPVARZ", "IPQUEUESZ", "RAFTZ"}

func monitoringRequests() []string {
	out := []string{"$SYS.REQ.SERVER.PING"} // STATSZ, what `nats server list` asks
	for _, v := range monitoringVerbs {
		out = append(out, "$SYS.REQ.SERVER.PING."+v, "$SYS.REQ.SERVER.*."+v)
	}
	return out
}

// UserSubjects matches subject.User(uid) for every uid.
func UserSubjects() string {
	s := subject.User(0)
	return s[:len(s)-1] + "*"
}

// Roles returns the NATS users of natter's binaries, gateway first, with
// what each binary publishes and subscribes to (see the subject catalogue
// in shared/subject and the table in docs/ARCHITECTURE.md). Users adds the
// operators'.
func Roles() []Role {
	roles := []Role{
		{
			Name: "gateway", Binary: "natter-gateway",
			Publish: []string{
				subject.UserRegister, subject.UserLogin, subject.UserLogouts,
				subject.UserLookup, subject.UserGatewayBeat, subject.UserGatewayLeave, subject.UserSessions,
				subject.OfflineStore, subject.OfflineStoreMany, subject.OfflineFetch, subject.OfflineAck,
				subject.FriendAdd, subject.FriendRemove, subject.FriendList,
				subject.GroupCreate, subject.GroupJoin, subject.GroupLeave, subject.GroupMine,
				subject.GroupMembers, subject.GroupSend,
			},
			// Pushes and control for the users it holds, and its replies.
			Subscribe: []string{UserSubjects()},
		},
		{
			Name: subject.UserService, Binary: "natter-user",
			// Kicks to the replaced session's gateway; presence events; a
			// login's bundle (inbox page, friends, groups).
			Publish: []string{UserSubjects(), subject.Presence,
				subject.OfflineFetch, subject.FriendList, subject.GroupMine},
			Subscribe: []string{
				subject.UserRegister, subject.UserLogin, subject.UserLogouts,
				subject.UserLookup, subject.UserProfiles, subject.UserSessions,
				subject.UserGatewayBeat, subject.UserGatewayLeave, Discovery,
			},
			Responds: true,
		},
		{
			Name: subject.OfflineService, Binary: "natter-offline",
			// Pushes of stored messages to the recipients' gateways.
			Publish:   []string{UserSubjects()},
			Subscribe: []string{subject.OfflineStore, subject.OfflineStoreMany, subject.OfflineFetch, subject.OfflineAck, Discovery},
			Responds:  true,
		},
		{
			Name: subject.FriendService, Binary: "natter-friend",
			// Presence pushes to friends; names and states from the user service.
			Publish: []string{UserSubjects(), subject.UserProfiles},
			Subscribe: []string{
				subject.FriendAdd, subject.FriendRemove, subject.FriendList,
				subject.Presence, Discovery,
			},
			Responds: true,
		},
		{
			Name: subject.GroupService, Binary: "natter-group",
			// One batched store per group chat; members' names and states.
			Publish: []string{subject.OfflineStore, subject.UserProfiles},
			Subscribe: []string{
				subject.GroupCreate, subject.GroupJoin, subject.GroupLeave, subject.GroupMine,
				subject.GroupMembers, subject.GroupSend, Discovery,
			},
			Responds: true,
		},
	}
	// Whoever sends requests reads its own replies, and only those.
	for i, r := range roles {
		for _, p := range r.Publish {
			if strings.HasPrefix(p, "natter.svc.") {
				roles[i].Subscribe = append(roles[i].Subscribe, r.Inbox())
				break
			}
		}
	}
	return roles
}

// Ops is the operators' NATS user in natter's account: micro discovery
// and statistics of the services (nats micro ls/info/stats, with
// --inbox-prefix _INBOX.ops), nothing else - it cannot send a natter
// request, read a push or a reply other than its own.
func Ops() Role {
	return Role{Name: "ops", Note: "operators (nats CLI): micro discovery and stats of the services",
		Publish: discoveryRequests(), Subscribe: []string{OpsInboxPrefix + ".>"}}
}

// SysOps is the operators' user in the system account: the servers'
// monitoring (nats server list/info/report ..., with --inbox-prefix
// _INBOX.ops), read-only - no reload, kick or lame duck.
func SysOps() Role {
	return Role{Name: "sys", Account: SystemAccount, Note: "operators (nats CLI): the servers' monitoring, read-only",
		Publish: monitoringRequests(), Subscribe: []string{OpsInboxPrefix + ".>"}}
}

// Users are every NATS user of the deployment: the binaries' roles, then
// Ops and SysOps.
func Users() []Role {
	return append(Roles(), Ops(), SysOps())
}

// AuthConf is deployments/k8s/base/nats/auth.conf: the NATS authorization
// block with one user per role, its password taken from the role's
// PasswordEnv, and the system account with the monitoring user.
func AuthConf() string {
	var b strings.Builder
	b.WriteString(`# natter's NATS users and their permissions, one user per role.
#
# GENERATED from shared/subject by deployments/k8s/manifest (natsauth.go):
# do not edit. After changing subjects or roles, regenerate it with
#
#     go test ./deployments/k8s/manifest -run TestAuthConf -update
#
# Only what is listed is allowed. Each requester gets its replies on an
# inbox prefix of its own (_INBOX.<role>, set by shared/natsconn from the
# binary's name) and may subscribe to that one only: no role can read
# another's replies. Services answer through allow_responses (a reply
# subject of a request they received, up to 3 times - a requester may
# re-send an unanswered request on the same reply subject - within 2
# minutes) and
# subscribe to $SRV.> for micro discovery. ops may ask the services for
# discovery and statistics; sys, in the system account, the servers for
# their monitoring data; both read replies on _INBOX.ops only (nats
# --inbox-prefix _INBOX.ops). Passwords come from the environment
# (NATS_PASSWORD_*, set from the natter-nats-auth Secret by the
# StatefulSet).
system_account: ` + SystemAccount + `
accounts {
  ` + SystemAccount + `: {
    users: [
`)
	for _, r := range Users() {
		if r.Account == SystemAccount {
			writeUser(&b, r, "      ")
		}
	}
	b.WriteString("    ]\n  }\n}\nauthorization {\n  users: [\n")
	for _, r := range Users() {
		if r.Account == "" {
			writeUser(&b, r, "    ")
		}
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

func writeUser(b *strings.Builder, r Role, pad string) {
	who := r.Binary
	if who == "" {
		who = r.Note
	}
	fmt.Fprintf(b, "%s# %s\n", pad, who)
	fmt.Fprintf(b, "%s{\n%s  user: %q\n%s  password: $%s\n%s  permissions: {\n", pad, pad, r.Name, pad, r.PasswordEnv(), pad)
	fmt.Fprintf(b, "%s    publish: { allow: %s }\n", pad, confList(r.Publish, len(pad)+4))
	fmt.Fprintf(b, "%s    subscribe: { allow: %s }\n", pad, confList(r.Subscribe, len(pad)+4))
	if r.Responds {
		fmt.Fprintf(b, "%s    allow_responses: { max: %d, expires: \"2m\" }\n", pad, natsreq.DefaultMaxAttempts)
	}
	fmt.Fprintf(b, "%s  }\n%s}\n", pad, pad)
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
