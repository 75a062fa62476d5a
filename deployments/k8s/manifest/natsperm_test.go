package manifest_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/deployments/k8s/manifest"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/natsconn"
	"github.com/natter-chat/natter/shared/subject"
)

// TestRolePermissions runs a NATS node from each overlay's rendered
// configuration (nats.conf, auth.conf, the TLS blocks, the passwords of
// the Secrets) and connects to it as every user, with the client name its
// binary connects with, so that the inbox prefix is the one
// shared/natsconn gives it. Each requester gets its replies; every other
// user's attempt to read them (its inbox, _INBOX.>, >) is refused, as is
// any subscription to the subject that carries passwords; every publish to
// a subject outside the user's allow list is refused. In prod the node
// speaks TLS to clients and mutual TLS on routes, and a plain client is
// turned away. No monitoring page shows a password.
func TestRolePermissions(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) { checkRolePermissions(t, load(t, overlay), overlay) })
	}
}

// roleClient is one user's connection and the permission errors the
// server sent it.
type roleClient struct {
	role manifest.Role
	nc   *nats.Conn
	mu   sync.Mutex
	errs []string
}

func (c *roleClient) addErr(err error) {
	c.mu.Lock()
	c.errs = append(c.errs, err.Error())
	c.mu.Unlock()
}

// violated reports whether the server refused what (publish or
// subscription) on subj.
func (c *roleClient) violated(what, subj string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.errs, func(e string) bool {
		return strings.Contains(strings.ToLower(e), "for "+what+" to ") && strings.Contains(e, fmt.Sprintf("%q", subj))
	})
}

func checkRolePermissions(t *testing.T, s *manifest.Set, overlay string) {
	dir := t.TempDir()
	opts, _, _ := natsConf(t, s, dir, "nats-0")
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.HTTPHost, opts.HTTPPort = "127.0.0.1", server.RANDOM_PORT
	opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", server.RANDOM_PORT
	opts.Routes = nil // one node is enough here
	opts.PidFile = filepath.Join(dir, "nats.pid")
	opts.NoSigs = true

	var tlsOpts []nats.Option
	if overlay == "prod" {
		if opts.TLSConfig == nil || opts.Cluster.TLSConfig == nil ||
			opts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
			t.Fatalf("prod NATS: client TLS %v, route TLS %v: want TLS for clients and mutual TLS for routes",
				opts.TLSConfig != nil, opts.Cluster.TLSConfig != nil)
		}
		ca, _ := secretValue(s, "natter-nats-tls", "ca.crt")
		caFile := filepath.Join(dir, "ca.crt")
		if err := os.WriteFile(caFile, []byte(ca), 0o600); err != nil {
			t.Fatal(err)
		}
		tlsOpts = []nats.Option{nats.RootCAs(caFile)}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	nlog := &natsLog{}
	ns.SetLoggerV2(nlog, false, false, false)
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	url := ns.ClientURL()
	log := slog.New(slog.DiscardHandler)

	if overlay == "prod" {
		pw, _ := secretValue(s, "natter-nats-auth", "gateway")
		if nc, err := nats.Connect(url, nats.UserInfo("gateway", pw), nats.MaxReconnects(0)); err == nil {
			nc.Close()
			t.Errorf("prod NATS took a client without TLS")
		}
	}

	clients := map[string]*roleClient{}
	for _, r := range manifest.Users() {
		name := r.Binary
		if name == "" {
			name = "natter-ops" // the operators, nats --inbox-prefix _INBOX.ops
			if natsconn.InboxPrefix(name) != manifest.OpsInboxPrefix {
				t.Fatalf("the operators' inbox prefix: %s, want %s", natsconn.InboxPrefix(name), manifest.OpsInboxPrefix)
			}
		}
		pw, ok := secretValue(s, "natter-nats-auth", r.Name)
		if !ok {
			t.Fatalf("natter-nats-auth has no key %s", r.Name)
		}
		c := &roleClient{role: r}
		copts := append([]nats.Option{nats.UserInfo(r.Name, pw), nats.MaxReconnects(0),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { c.addErr(err) })}, tlsOpts...)
		c.nc, err = natsconn.Connect(url, name, log, copts...)
		if err != nil {
			t.Fatalf("connect as %s: %v", r.Name, err)
		}
		t.Cleanup(c.nc.Close)
		clients[r.Name] = c
	}

	// Responders: the user service answers a login (whose reply carries a
	// resume token) and profiles, the offline service a store, and the
	// user service micro's discovery.
	respond := func(who, subj string) {
		t.Helper()
		if _, err := clients[who].nc.Subscribe(subj, func(m *nats.Msg) { m.Respond([]byte("reply to " + m.Subject)) }); err != nil {
			t.Fatal(err)
		}
		if err := clients[who].nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	respond(subject.UserService, subject.UserLogin)
	respond(subject.UserService, subject.UserProfiles)
	respond(subject.UserService, "$SRV.PING")
	respond(subject.OfflineService, subject.OfflineStore)

	// Every user tries to read everything but its own replies: the other
	// users' inboxes, all inboxes, everything, and the logins.
	type sniff struct {
		who  string
		subj string
		sub  *nats.Subscription
	}
	var sniffs []sniff
	for _, c := range clients {
		targets := []string{">", "_INBOX.>", subject.UserLogin}
		for _, other := range manifest.Users() {
			targets = append(targets, other.Inbox())
		}
		for _, subj := range targets {
			if slices.Contains(c.role.Subscribe, subj) {
				continue // its own inbox; the user service serves the logins
			}
			sub, err := c.nc.SubscribeSync(subj)
			if err != nil {
				t.Fatal(err)
			}
			sniffs = append(sniffs, sniff{c.role.Name, subj, sub})
		}
		if err := c.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	// Each requester gets its replies, on its own inbox.
	for _, rq := range []struct{ who, subj string }{
		{"gateway", subject.UserLogin},
		{subject.FriendService, subject.UserProfiles},
		{subject.GroupService, subject.UserProfiles},
		{subject.GroupService, subject.OfflineStore},
		{"ops", "$SRV.PING"},
		{"sys", "$SYS.REQ.SERVER.PING.VARZ"},
	} {
		m, err := clients[rq.who].nc.Request(rq.subj, []byte("{}"), 5*time.Second)
		if err != nil {
			t.Errorf("%s: request %s: %v", rq.who, rq.subj, err)
			continue
		}
		if !strings.HasPrefix(m.Subject, natsconn.InboxPrefix(roleName(rq.who))+".") {
			t.Errorf("%s: the reply to %s came on %s, not the role's inbox", rq.who, rq.subj, m.Subject)
		}
	}

	// Every user publishes to each subject it is not allowed to.
	forbidden := subjectConstants(t)
	forbidden = append(forbidden, subject.User(42), "$SRV.PING", "$SRV.STATS.user",
		"$SYS.REQ.SERVER.PING.VARZ", "$SYS.REQ.SERVER.NABCDEF.RELOAD", "$SYS.REQ.SERVER.NABCDEF.KICK",
		"$SYS.REQ.SERVER.NABCDEF.LDM", "$SYS.REQ.SERVER.PING.PROFILEZ")
	for _, r := range manifest.Users() {
		forbidden = append(forbidden, strings.TrimSuffix(r.Inbox(), ">")+"x.1")
	}
	type pub struct{ who, subj string }
	var pubs []pub
	for _, c := range clients {
		for _, subj := range forbidden {
			if matchesAny(c.role.Publish, subj) {
				continue
			}
			if err := c.nc.Publish(subj, []byte("forged")); err != nil {
				t.Fatal(err)
			}
			pubs = append(pubs, pub{c.role.Name, subj})
		}
		if err := c.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	eventually.NoError(t, 10*time.Second, func() error {
		for _, p := range pubs {
			if !clients[p.who].violated("publish", p.subj) {
				return errors.New("still waiting for a permission violation for every forbidden publish and subscription")
			}
		}
		for _, sn := range sniffs {
			if !clients[sn.who].violated("subscription", sn.subj) {
				return errors.New("still waiting for a permission violation for every forbidden publish and subscription")
			}
		}
		return nil
	})
	for _, sn := range sniffs {
		if n, _, _ := sn.sub.Pending(); n > 0 {
			t.Errorf("%s read %d messages on %s", sn.who, n, sn.subj)
		}
	}
	t.Logf("%s: %d forbidden publishes and %d forbidden subscriptions refused", overlay, len(pubs), len(sniffs))

	// The monitoring port shows no password (it is open to the cluster).
	for _, page := range []string{"/varz", "/routez", "/connz?auth=1&subs=1", "/subsz?subs=1"} {
		resp, err := http.Get("http://" + ns.MonitorAddr().String() + page)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for key := range operatorSecrets["natter-nats-auth"] {
			pw, _ := secretValue(s, "natter-nats-auth", key)
			if strings.Contains(string(body), pw) {
				t.Errorf("%s shows the %s password", page, key)
			}
		}
	}
}

// roleName is the client name the role's process connects with.
func roleName(user string) string {
	for _, r := range manifest.Users() {
		if r.Name == user && r.Binary != "" {
			return r.Binary
		}
	}
	return "natter-ops"
}
