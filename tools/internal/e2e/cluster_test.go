package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/services/friend"
	"github.com/natter-chat/natter/services/group"
	"github.com/natter-chat/natter/services/offline"
	"github.com/natter-chat/natter/services/user"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/natstest"
	"github.com/natter-chat/natter/shared/sqldb"
)

// cluster is a natter deployment inside the test process, on real sockets.
type cluster struct {
	t   testing.TB
	ns  *server.Server
	db  *sqldb.DB
	gws []*gateway.Gateway
	// gwConns[i] is gateway i's NATS connection.
	gwConns []*nats.Conn
}

type clusterOpts struct {
	policy      string
	presenceTTL time.Duration
	maxFrame    int
	floodRate   float64
	writeLimit  int
	mysql       bool
	offline     func(*offline.Config) // changes the offline services' defaults
	// gwInbox: the gateways' NATS inbox prefix (their replies), so that a
	// test can tell their requests from the services'.
	gwInbox string
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("NATTER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newCluster starts NATS, two instances of each service (user, offline,
// friend, group) and two gateways.
func newCluster(t testing.TB, o clusterOpts) *cluster {
	t.Helper()
	c := &cluster{t: t, ns: natstest.Run(t)}
	if o.mysql {
		c.db = dbtest.MySQL(t)
	} else {
		c.db = dbtest.SQLite(t)
	}
	log := testLogger(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		ucfg := user.DefaultConfig()
		ucfg.BcryptCost = bcrypt.MinCost
		if o.policy != "" {
			ucfg.LoginPolicy = o.policy
		}
		us, err := user.Start(ctx, c.conn(), c.db, ucfg, log)
		if err != nil {
			t.Fatalf("user service: %v", err)
		}
		t.Cleanup(func() { us.Stop() })
		ocfg := offline.DefaultConfig()
		if o.offline != nil {
			o.offline(&ocfg)
		}
		os, err := offline.Start(ctx, c.conn(), c.db, ocfg, log)
		if err != nil {
			t.Fatalf("offline service: %v", err)
		}
		t.Cleanup(func() { os.Stop() })
		fs, err := friend.Start(ctx, c.conn(), c.db, friend.DefaultConfig(), log)
		if err != nil {
			t.Fatalf("friend service: %v", err)
		}
		t.Cleanup(func() { fs.Stop() })
		gs, err := group.Start(ctx, c.conn(), c.db, group.DefaultConfig(), log)
		if err != nil {
			t.Fatalf("group service: %v", err)
		}
		t.Cleanup(func() { gs.Stop() })
	}
	for i := 0; i < 2; i++ {
		c.addGateway(o)
	}
	return c
}

func (c *cluster) conn() *nats.Conn { return natstest.Connect(c.t, c.ns) }

func (c *cluster) addGateway(o clusterOpts) *gateway.Gateway {
	c.t.Helper()
	cfg := gateway.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	if o.presenceTTL > 0 {
		cfg.PresenceTTL = o.presenceTTL
	}
	if o.maxFrame > 0 {
		cfg.MaxFrame = o.maxFrame
	}
	if o.writeLimit > 0 {
		cfg.WriteLimit = o.writeLimit
	}
	if o.floodRate > 0 {
		cfg.FloodRate, cfg.FloodBurst = o.floodRate, int(o.floodRate)
	}
	nc := c.conn()
	if o.gwInbox != "" {
		var err error
		if nc, err = nats.Connect(c.ns.ClientURL(), nats.CustomInboxPrefix(o.gwInbox)); err != nil {
			c.t.Fatalf("gateway connection: %v", err)
		}
		c.t.Cleanup(nc.Close)
	}
	g := startGateway(c.t, nc, cfg)
	c.gws = append(c.gws, g)
	c.gwConns = append(c.gwConns, nc)
	return g
}

// startGateway starts a gateway on nc with cfg; it stops with the test.
func startGateway(t testing.TB, nc *nats.Conn, cfg gateway.Config) *gateway.Gateway {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := gateway.Start(ctx, nc, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Stop(ctx)
	})
	return g
}

// client is a raw TCP client of one gateway.
type client struct {
	t    testing.TB
	name string
	conn net.Conn
	r    *bufio.Reader
	term byte
}

func dial(t testing.TB, addr net.Addr, term byte, name string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, name: name, conn: conn, r: bufio.NewReaderSize(conn, 128<<10), term: term}
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

// send writes v (a string frame or a value to encode) with the client's
// terminator.
func (c *client) send(v any) {
	c.t.Helper()
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			c.t.Fatal(err)
		}
	}
	c.sendRaw(string(append(b, c.term)))
}

// recvRaw reads the next frame as text, failing after timeout.
func (c *client) recvRaw(timeout time.Duration) (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		s, err := c.r.ReadString(c.term)
		if err != nil {
			return "", err
		}
		// A legacy record ends in NUL filler: empty frames.
		if s = strings.TrimSuffix(s, string([]byte{c.term})); s != "" {
			return s, nil
		}
	}
}

type frame map[string]any

func (f frame) num(k string) int64 {
	v, _ := f[k].(float64)
	return int64(v)
}

func (f frame) str(k string) string {
	v, _ := f[k].(string)
	return v
}

func (c *client) recv() frame {
	c.t.Helper()
	s, err := c.recvRaw(5 * time.Second)
	if err != nil {
		c.t.Fatalf("%s: recv: %v", c.name, err)
	}
	var f frame
	if err := json.Unmarshal([]byte(s), &f); err != nil {
		c.t.Fatalf("%s: recv %q: %v", c.name, s, err)
	}
	return f
}

// recvMsgID reads frames until one with msgid arrives, failing on anything
// else.
// Presence notices (msgid 16) arrive whenever friends come and go; expect
// skips them unless it is waiting for one.
func (c *client) expect(msgid int64) frame {
	c.t.Helper()
	for {
		f := c.recv()
		if f.num("msgid") == 16 && msgid != 16 {
			continue
		}
		if f.num("msgid") != msgid {
			c.t.Fatalf("%s: got %v, want msgid %d", c.name, f, msgid)
		}
		return f
	}
}

// presence reads until a presence notice says friend id is in state,
// skipping earlier notices (coalescing may deliver a state the client
// already knew).
func (c *client) presence(id int64, state string) {
	c.t.Helper()
	for {
		f := c.expect(16)
		if f.num("id") == id && f.str("state") == state {
			return
		}
	}
}

// quiet asserts nothing arrives for a short while.
func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	if s, err := c.recvRaw(d); err == nil {
		c.t.Fatalf("%s: unexpected frame %s", c.name, s)
	}
}

// register creates an account and returns its id.
func (c *client) register(name, pw string) int64 {
	c.t.Helper()
	c.send(frame{"msgid": 4, "name": name, "password": pw})
	f := c.expect(5)
	if f.num("errno") != 0 {
		c.t.Fatalf("register %s: %v", name, f)
	}
	return f.num("id")
}

// signUp registers name and logs the new account in; it returns its id.
func (c *client) signUp(name, pw string) int64 {
	c.t.Helper()
	id := c.register(name, pw)
	c.login(id, pw)
	return id
}

// signUpWithPeer registers name and peer, both with password pw, and logs
// name in; it returns both ids.
func (c *client) signUpWithPeer(name, peer, pw string) (id, peerID int64) {
	c.t.Helper()
	id = c.register(name, pw)
	peerID = c.register(peer, pw)
	c.login(id, pw)
	return id, peerID
}

// chatTo sends msg to user toID, whose client is to: the sender gets its
// ack, to gets the message.
func (c *client) chatTo(to *client, toID int64, msg string) {
	c.t.Helper()
	c.send(chat(toID, msg))
	c.expect(14)
	if f := to.expect(6); f.str("msg") != msg {
		c.t.Fatalf("%s got %v, want %q from %s", to.name, f, msg, c.name)
	}
}

func (c *client) login(id int64, pw string, extra ...any) frame {
	c.t.Helper()
	req := frame{"msgid": 1, "id": id, "password": pw}
	for i := 0; i+1 < len(extra); i += 2 {
		req[extra[i].(string)] = extra[i+1]
	}
	c.send(req)
	f := c.expect(2)
	if f.num("errno") != 0 {
		c.t.Fatalf("%s: login %d: %v", c.name, id, f)
	}
	return f
}

func chat(to int64, msg string) frame {
	return frame{"msgid": 6, "toid": to, "msg": msg, "time": "2026-11-21 12:00:00"}
}
