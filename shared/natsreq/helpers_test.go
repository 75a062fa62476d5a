package natsreq_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/natsreq"
	"github.com/natter-chat/natter/shared/natstest"
)

// waitLong bounds the waits of these tests for something that must happen;
// it is far above any per-attempt timeout they use, so a wait that ends
// in time says which path answered, not how fast.
const waitLong = 20 * time.Second

// runNode starts a nats-server on port (-1: a random one); with a cluster
// name it is a cluster node routed to routes.
func runNode(t testing.TB, name string, port int, cluster, routes string) *server.Server {
	t.Helper()
	opts := &server.Options{ServerName: name, Port: port}
	if cluster != "" {
		opts.Cluster = server.ClusterOpts{Name: cluster, Host: "127.0.0.1", Port: -1, PoolSize: -1}
		opts.Routes = server.RoutesFromStr(routes)
	}
	return natstest.RunOptions(t, opts)
}

// runCluster starts n nodes routed to each other and waits until every
// node has a route to every other.
func runCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	seed := runNode(t, "n0", -1, "natsreq", "")
	routes := fmt.Sprintf("nats-route://%s", seed.ClusterAddr())
	nodes := []*server.Server{seed}
	for i := 1; i < n; i++ {
		nodes = append(nodes, runNode(t, fmt.Sprintf("n%d", i), -1, "natsreq", routes))
	}
	eventually.NoError(t, waitLong, func() error {
		for _, s := range nodes {
			if s.NumRoutes() != n-1 {
				return errors.New("still waiting for a full mesh of routes")
			}
		}
		return nil
	})
	return nodes
}

// connect opens a connection that reconnects quickly, to the servers in
// the order given.
func connect(t testing.TB, opts []nats.Option, servers ...*server.Server) *nats.Conn {
	t.Helper()
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.ClientURL()
	}
	opts = append([]nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.DontRandomize(),
	}, opts...)
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// newRequester builds a Requester on nc, re-sending on nc's reconnects,
// closed when the test ends.
func newRequester(t testing.TB, nc *nats.Conn, opts natsreq.Options) *natsreq.Requester {
	t.Helper()
	r, err := natsreq.New(nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetReconnectHandler(func(*nats.Conn) { r.Reconnected() })
	t.Cleanup(func() { r.Close() })
	return r
}

// responder answers requests on a subject with their own data, when
// answer says so, and counts every request it receives by reply subject.
type responder struct {
	mu     sync.Mutex
	seen   map[string]int
	total  int
	answer func(m *nats.Msg, n int) bool // n: how many times this reply subject was seen, this one included
}

func respond(t testing.TB, nc *nats.Conn, subj string, answer func(m *nats.Msg, n int) bool) *responder {
	t.Helper()
	rs := &responder{seen: make(map[string]int), answer: answer}
	sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
		rs.mu.Lock()
		rs.seen[m.Reply]++
		rs.total++
		n := rs.seen[m.Reply]
		rs.mu.Unlock()
		if rs.answer == nil || rs.answer(m, n) {
			m.Respond(m.Data)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return rs
}

// received is how many requests arrived in all.
func (rs *responder) received() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.total
}

// counts returns the number of receipts of each reply subject.
func (rs *responder) counts() map[string]int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make(map[string]int, len(rs.seen))
	for k, v := range rs.seen {
		out[k] = v
	}
	return out
}

// results collects what Options.Observe reports.
type results struct {
	mu  sync.Mutex
	all []natsreq.Result
}

func (rs *results) observe(r natsreq.Result) {
	rs.mu.Lock()
	rs.all = append(rs.all, r)
	rs.mu.Unlock()
}

func (rs *results) list() []natsreq.Result {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]natsreq.Result(nil), rs.all...)
}

// outcome is one call's answer, recorded by its done function.
type outcome struct {
	msg   *nats.Msg
	err   error
	calls int // how many times done was called
}

// calls records the done calls of many Go calls, by index.
type calls struct {
	mu  sync.Mutex
	out []outcome
}

func newCalls(n int) *calls { return &calls{out: make([]outcome, n)} }

func (cs *calls) done(i int) func(*nats.Msg, error) {
	return func(m *nats.Msg, err error) {
		cs.mu.Lock()
		cs.out[i].msg, cs.out[i].err = m, err
		cs.out[i].calls++
		cs.mu.Unlock()
	}
}

// finished counts the calls in [from, to) whose done ran.
func (cs *calls) finished(from, to int) int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	n := 0
	for _, o := range cs.out[from:to] {
		if o.calls > 0 {
			n++
		}
	}
	return n
}

func (cs *calls) get(i int) outcome {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.out[i]
}

// answerTo is a callback of Requester.Go that sends the answer's data, or
// the error's text, on got.
func answerTo(got chan<- string) func(*nats.Msg, error) {
	return func(m *nats.Msg, err error) {
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(m.Data)
	}
}
