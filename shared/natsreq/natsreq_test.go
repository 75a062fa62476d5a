package natsreq_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/faultproxy"
	"github.com/natter-chat/natter/shared/natsreq"
	"github.com/natter-chat/natter/shared/natstest"
)

// TestReply: Request and Go get the reply; the headers go with the
// request; the subscription uses the connection's inbox prefix.
func TestReply(t *testing.T) {
	s := natstest.Run(t)
	svc := natstest.Connect(t, s)
	var prefixOK atomic.Bool
	natstest.Subscribe(t, svc, "svc.echo", func(m *nats.Msg) {
		prefixOK.Store(strings.HasPrefix(m.Reply, "_I.gw."))
		reply := nats.NewMsg(m.Reply)
		reply.Data = m.Data
		reply.Header.Set("Echo", m.Header.Get("Trace"))
		m.RespondMsg(reply)
	})
	var res results
	r := newRequester(t, connect(t, []nats.Option{nats.CustomInboxPrefix("_I.gw")}, s),
		natsreq.Options{Observe: res.observe})

	m, err := r.Request(context.Background(), "svc.echo", []byte("hello"),
		natsreq.CallOpts{Header: nats.Header{"Trace": []string{"t1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "hello" || m.Header.Get("Echo") != "t1" {
		t.Errorf("reply %q with Echo %q, want hello with t1", m.Data, m.Header.Get("Echo"))
	}
	if in := r.Inbox(); !strings.HasPrefix(in, "_I.gw.") || !strings.HasSuffix(in, ".*") {
		t.Errorf("Inbox() = %q, want _I.gw.<id>.*", in)
	}
	if !prefixOK.Load() {
		t.Error("the reply subject does not use the connection's inbox prefix _I.gw")
	}

	got := make(chan string, 1)
	if err := r.Go("svc.echo", []byte("async"), natsreq.CallOpts{Idempotent: true}, answerTo(got)); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "async" {
		t.Errorf("Go answered %q, want async", s)
	}
	for _, o := range res.list() {
		if o.Outcome != natsreq.Replied || o.Attempts != 1 || o.Subject != "svc.echo" || o.Duration <= 0 {
			t.Errorf("observed %+v, want one attempt replied on svc.echo", o)
		}
	}
	if st := r.Stats(); st.InFlight != 0 || st.Late != 0 || st.Resent != 0 {
		t.Errorf("stats %+v, want all zero", st)
	}
}

// TestServiceErrorIsAReply: a micro error answer is returned as the
// message, for the caller to decode.
func TestServiceErrorIsAReply(t *testing.T) {
	s := natstest.Run(t)
	svc := natstest.Connect(t, s)
	ms, err := micro.AddService(svc, micro.Config{Name: "test", Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Stop()
	if err := ms.AddEndpoint("fail", micro.HandlerFunc(func(req micro.Request) {
		req.Error("not_found", "no such thing", nil)
	}), micro.WithEndpointSubject("svc.fail")); err != nil {
		t.Fatal(err)
	}
	r := newRequester(t, natstest.Connect(t, s), natsreq.Options{})
	m, err := r.Request(context.Background(), "svc.fail", nil, natsreq.CallOpts{Idempotent: true})
	if err != nil {
		t.Fatal(err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "not_found" {
		t.Errorf("error code header %q, want not_found", code)
	}
}

// TestLostNATSNode kills the node the requester is connected to while
// calls wait at a service on another node that lost them: every
// idempotent call is sent again on the new connection at once and
// completes, though its attempt timeout and deadline are a minute and
// more; the calls that are not idempotent are never sent again.
func TestLostNATSNode(t *testing.T) {
	nodes := runCluster(t, 3)
	var swallow atomic.Bool
	svc := respond(t, connect(t, nil, nodes[2]), "svc.store", func(*nats.Msg, int) bool { return !swallow.Load() })
	nc := connect(t, nil, nodes[1], nodes[0], nodes[2])
	var res results
	r := newRequester(t, nc, natsreq.Options{AttemptTimeout: time.Minute, Timeout: 2 * time.Minute, Observe: res.observe})

	// The service's interest reaches node 1 (a no-responders answer is
	// retried meanwhile).
	if _, err := r.Request(context.Background(), "svc.store", []byte("warm"), natsreq.CallOpts{Idempotent: true}); err != nil {
		t.Fatal(err)
	}
	before := svc.received()
	swallow.Store(true)

	const idem, once = 40, 4
	cs := newCalls(idem + once)
	for i := range idem + once {
		opts := natsreq.CallOpts{Idempotent: i < idem}
		if i >= idem {
			opts.Timeout = time.Second
		}
		if err := r.Go("svc.store", fmt.Appendf(nil, "m%d", i), opts, cs.done(i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually.NoError(t, waitLong, func() error {
		if got := svc.received(); got != before+idem+once {
			return fmt.Errorf("still waiting for the service to receive every call: got %v, want == before+idem+once", got)
		}
		return nil
	})
	swallow.Store(false)
	nodes[1].Shutdown()

	eventually.NoError(t, waitLong, func() error {
		if got := cs.finished(0, idem+once); got != idem+once {
			return fmt.Errorf("still waiting for every call to end: got %v, want == idem+once", got)
		}
		return nil
	})
	for i := range idem {
		o := cs.get(i)
		if o.err != nil || string(o.msg.Data) != fmt.Sprintf("m%d", i) || o.calls != 1 {
			t.Errorf("idempotent call %d: %+v, want its echo once", i, o)
		}
	}
	for i := idem; i < idem+once; i++ {
		if o := cs.get(i); !errors.Is(o.err, nats.ErrTimeout) || !errors.Is(o.err, api.ErrUnavailable) {
			t.Errorf("call %d (not idempotent): %v, want a timeout", i, o.err)
		}
	}
	resent := 0
	for reply, n := range svc.counts() {
		switch {
		case n > 2:
			t.Errorf("%s received %d times, want at most 2", reply, n)
		case n == 2:
			resent++
		}
	}
	if resent != idem {
		t.Errorf("%d calls received twice, want the %d idempotent ones", resent, idem)
	}
	for _, o := range res.list() {
		if o.Outcome == natsreq.Replied && o.Attempts > 2 {
			t.Errorf("observed %+v, want at most 2 attempts", o)
		}
	}
}

// TestLostNATSNodeUnderTraffic kills the requester's node while it keeps
// 32 idempotent calls in flight to a service on another node: every call
// is answered, by its first attempt, by the re-send after the reconnect
// or from the reconnect buffer, never by waiting out an attempt timeout
// (a minute here).
func TestLostNATSNodeUnderTraffic(t *testing.T) {
	nodes := runCluster(t, 3)
	respond(t, connect(t, nil, nodes[2]), "svc.store", nil)
	nc := connect(t, nil, nodes[1], nodes[0], nodes[2])
	r := newRequester(t, nc, natsreq.Options{AttemptTimeout: time.Minute, Timeout: 2 * time.Minute})
	if _, err := r.Request(context.Background(), "svc.store", nil, natsreq.CallOpts{Idempotent: true}); err != nil {
		t.Fatal(err)
	}

	const window, before, after = 32, 300, 300
	var (
		mu        sync.Mutex
		answered  int
		failures  []string
		killed    = make(chan struct{})
		afterKill int
	)
	slots := make(chan struct{}, window)
	sent := 0
	for {
		mu.Lock()
		done := afterKill >= after
		mu.Unlock()
		if done {
			break
		}
		select {
		case slots <- struct{}{}:
		case <-time.After(waitLong):
			t.Fatalf("no call of the %d in flight ended for %v", window, waitLong)
		}
		want := fmt.Sprintf("m%d", sent)
		sent++
		if err := r.Go("svc.store", []byte(want), natsreq.CallOpts{Idempotent: true}, func(m *nats.Msg, err error) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				failures = append(failures, fmt.Sprintf("%s: %v", want, err))
			case string(m.Data) != want:
				failures = append(failures, fmt.Sprintf("%s answered %q", want, m.Data))
			}
			answered++
			select {
			case <-killed:
				afterKill++
			default:
			}
			<-slots
		}); err != nil {
			t.Fatal(err)
		}
		if sent == before {
			eventually.NoError(t, waitLong, func() error {
				mu.Lock()
				defer mu.Unlock()
				if !(answered >= before-window) {
					return errors.New("still waiting for traffic to flow")
				}
				return nil
			})
			nodes[1].Shutdown()
			close(killed)
		}
	}
	eventually.NoError(t, waitLong, func() error {
		mu.Lock()
		defer mu.Unlock()
		if answered != sent {
			return errors.New("still waiting for every call to be answered")
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for _, f := range failures {
		t.Error(f)
	}
	if nc.ConnectedServerName() == "n1" {
		t.Error("still connected to the killed node")
	}
}

// TestLostServiceInstance: the first attempt goes to an instance that
// dies with it; the call is sent again after one attempt timeout and
// answered, well inside its deadline.
func TestLostServiceInstance(t *testing.T) {
	s := natstest.Run(t)
	svc := respond(t, natstest.Connect(t, s), "svc.fetch", func(_ *nats.Msg, n int) bool { return n > 1 })
	var res results
	r := newRequester(t, natstest.Connect(t, s),
		natsreq.Options{AttemptTimeout: 20 * time.Millisecond, Timeout: time.Minute, Observe: res.observe})
	m, err := r.Request(context.Background(), "svc.fetch", []byte("f"), natsreq.CallOpts{Idempotent: true})
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "f" {
		t.Errorf("reply %q", m.Data)
	}
	if got := res.list(); len(got) != 1 || got[0].Attempts != 2 || got[0].Outcome != natsreq.Replied {
		t.Errorf("observed %+v, want one call replied after 2 attempts", got)
	}
	if got := svc.received(); got != 2 {
		t.Errorf("service received %d requests, want 2", got)
	}
	if st := r.Stats(); st.Resent != 1 {
		t.Errorf("stats %+v, want 1 resent", st)
	}
}

// TestAttemptsBounded: a service that never answers gets MaxAttempts
// attempts of an idempotent call, then the call waits for its deadline.
func TestAttemptsBounded(t *testing.T) {
	s := natstest.Run(t)
	svc := respond(t, natstest.Connect(t, s), "svc.slow", func(*nats.Msg, int) bool { return false })
	var res results
	r := newRequester(t, natstest.Connect(t, s),
		natsreq.Options{AttemptTimeout: 5 * time.Millisecond, MaxAttempts: 3, Observe: res.observe})
	_, err := r.Request(context.Background(), "svc.slow", nil, natsreq.CallOpts{Idempotent: true, Timeout: 300 * time.Millisecond})
	if !errors.Is(err, nats.ErrTimeout) || !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("err %v, want a timeout", err)
	}
	if got := svc.received(); got != 3 {
		t.Errorf("service received %d attempts, want 3", got)
	}
	if got := res.list(); len(got) != 1 || got[0].Attempts != 3 || got[0].Outcome != natsreq.TimedOut {
		t.Errorf("observed %+v, want one call timed out after 3 attempts", got)
	}
}

// TestNoRespondersThenService: a call to a subject nobody serves is sent
// again after a pause until a service appears, and answered by it.
func TestNoRespondersThenService(t *testing.T) {
	s := natstest.Run(t)
	nc := natstest.Connect(t, s)
	var res results
	r := newRequester(t, nc, natsreq.Options{Observe: res.observe})
	got := make(chan error, 1)
	if err := r.Go("svc.late", []byte("x"), natsreq.CallOpts{Idempotent: true, Timeout: time.Minute},
		func(m *nats.Msg, err error) {
			if err == nil && string(m.Data) != "x" {
				err = fmt.Errorf("reply %q", m.Data)
			}
			got <- err
		}); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, waitLong, func() error {
		if got := nc.Stats().OutMsgs; got < 3 {
			return fmt.Errorf("still waiting for the call to be sent 3 times: got %v, want >= 3", got)
		}
		return nil
	})
	respond(t, natstest.Connect(t, s), "svc.late", nil)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if o := res.list(); len(o) != 1 || o[0].Attempts < 3 || o[0].Outcome != natsreq.Replied {
		t.Errorf("observed %+v, want one call replied after 3 or more attempts", o)
	}
}

// TestNoResponders: an idempotent call fails with no responders at its
// deadline, after retries; a call that is not idempotent fails at the
// first answer, sent once.
func TestNoResponders(t *testing.T) {
	s := natstest.Run(t)
	nc := natstest.Connect(t, s)
	var res results
	r := newRequester(t, nc, natsreq.Options{Backoff: 5 * time.Millisecond, Observe: res.observe})
	for _, tc := range []struct {
		name       string
		idempotent bool
		attempts   func(int) bool
	}{
		{"idempotent", true, func(n int) bool { return n >= 2 }},
		{"once", false, func(n int) bool { return n == 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(res.list())
			_, err := r.Request(context.Background(), "svc.none", nil,
				natsreq.CallOpts{Idempotent: tc.idempotent, Timeout: 200 * time.Millisecond})
			if !errors.Is(err, nats.ErrNoResponders) || !errors.Is(err, api.ErrUnavailable) {
				t.Fatalf("err %v, want no responders", err)
			}
			o := res.list()[before]
			if o.Outcome != natsreq.NoResponders || !tc.attempts(o.Attempts) {
				t.Errorf("observed %+v", o)
			}
		})
	}
}

// TestNotIdempotentSentOnce: a call that is not idempotent is never sent
// again, whatever its attempt timeout; it waits for its deadline.
func TestNotIdempotentSentOnce(t *testing.T) {
	s := natstest.Run(t)
	svc := respond(t, natstest.Connect(t, s), "svc.register", func(*nats.Msg, int) bool { return false })
	nc := natstest.Connect(t, s)
	r := newRequester(t, nc, natsreq.Options{AttemptTimeout: time.Millisecond, MaxAttempts: 10})
	out := nc.Stats().OutMsgs
	_, err := r.Request(context.Background(), "svc.register", nil, natsreq.CallOpts{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("err %v, want a timeout", err)
	}
	if n := nc.Stats().OutMsgs - out; n != 1 {
		t.Errorf("published %d times, want once", n)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, waitLong, func() error {
		if got := svc.received(); got != 1 {
			return fmt.Errorf("still waiting for the service to receive the call: got %v, want == 1", got)
		}
		return nil
	})
}

// TestLateReplyDropped: the service answers the first attempt after the
// second has answered the call: the late reply is dropped, done runs
// once.
func TestLateReplyDropped(t *testing.T) {
	s := natstest.Run(t)
	svcConn := natstest.Connect(t, s)
	var first atomic.Pointer[nats.Msg]
	respond(t, svcConn, "svc.ack", func(m *nats.Msg, n int) bool {
		if n == 1 {
			first.Store(m)
			return false
		}
		return true
	})
	r := newRequester(t, natstest.Connect(t, s), natsreq.Options{AttemptTimeout: 10 * time.Millisecond})
	var dones atomic.Int32
	got := make(chan string, 2)
	answer := answerTo(got)
	if err := r.Go("svc.ack", []byte("second"), natsreq.CallOpts{Idempotent: true, Timeout: time.Minute},
		func(m *nats.Msg, err error) {
			dones.Add(1)
			answer(m, err)
		}); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "second" {
		t.Fatalf("answer %q", s)
	}
	if err := first.Load().Respond([]byte("first")); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, waitLong, func() error {
		if got := r.Stats().Late; got != 1 {
			return fmt.Errorf("still waiting for the late reply to be dropped: got %v, want == 1", got)
		}
		return nil
	})
	if n := dones.Load(); n != 1 {
		t.Errorf("done called %d times, want once", n)
	}
}

// TestClose fails every call in flight and every call after.
func TestClose(t *testing.T) {
	s := natstest.Run(t)
	svc := respond(t, natstest.Connect(t, s), "svc.hold", func(*nats.Msg, int) bool { return false })
	var res results
	r, err := natsreq.New(natstest.Connect(t, s), natsreq.Options{Observe: res.observe})
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	cs := newCalls(n)
	for i := range n {
		if err := r.Go("svc.hold", nil, natsreq.CallOpts{Idempotent: i%2 == 0}, cs.done(i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually.NoError(t, waitLong, func() error {
		if got := svc.received(); got != n {
			return fmt.Errorf("still waiting for the service to hold every call: got %v, want == n", got)
		}
		return nil
	})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if o := cs.get(i); o.calls != 1 || !errors.Is(o.err, natsreq.ErrClosed) || !errors.Is(o.err, api.ErrUnavailable) {
			t.Errorf("call %d: %+v, want closed once", i, o)
		}
	}
	for _, o := range res.list() {
		if o.Outcome != natsreq.Closed {
			t.Errorf("observed %+v, want closed", o)
		}
	}
	if err := r.Go("svc.hold", nil, natsreq.CallOpts{}, func(*nats.Msg, error) { t.Error("done called after Go failed") }); !errors.Is(err, natsreq.ErrClosed) {
		t.Errorf("Go after Close: %v, want ErrClosed", err)
	}
	if _, err := r.Request(context.Background(), "svc.hold", nil, natsreq.CallOpts{}); !errors.Is(err, natsreq.ErrClosed) {
		t.Errorf("Request after Close: %v, want ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestRequestContext: a cancelled context ends the call; a context's
// deadline shorter than the call's timeout bounds the call; a call on an
// ended context never starts.
func TestRequestContext(t *testing.T) {
	s := natstest.Run(t)
	svcConn := natstest.Connect(t, s)
	held := make(chan *nats.Msg, 10)
	svc := respond(t, svcConn, "svc.hold", func(m *nats.Msg, _ int) bool { held <- m; return false })
	r := newRequester(t, natstest.Connect(t, s), natsreq.Options{Timeout: time.Hour})

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-held
		cancel()
	}()
	_, err := r.Request(ctx, "svc.hold", []byte("a"), natsreq.CallOpts{})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("err %v, want canceled", err)
	}
	if st := r.Stats(); st.InFlight != 0 {
		t.Errorf("%d calls in flight after cancel", st.InFlight)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := r.Request(ctx, "svc.hold", []byte("b"), natsreq.CallOpts{}); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("err %v, want unavailable", err)
	}
	<-ctx.Done()
	received := svc.received()
	if _, err := r.Request(ctx, "svc.hold", nil, natsreq.CallOpts{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Request on an expired context: %v, want deadline exceeded", err)
	}
	if st := r.Stats(); st.InFlight != 0 {
		t.Errorf("%d calls in flight", st.InFlight)
	}
	if got := svc.received(); got != received {
		t.Errorf("a call on an expired context was sent")
	}
}

// TestReconnectResendsOnlyLost: after a reconnect, a call sent on the lost
// connection is sent again; one sent while disconnected (buffered for the
// new connection) is not.
func TestReconnectResendsOnlyLost(t *testing.T) {
	s := natstest.Run(t)
	svcConn := natstest.Connect(t, s)
	svc, err := svcConn.SubscribeSync("svc.q") // never answers: the calls stay in flight
	if err != nil {
		t.Fatal(err)
	}
	if err := svcConn.Flush(); err != nil {
		t.Fatal(err)
	}
	p := faultproxy.New(t, s.Addr().String())
	nc, err := nats.Connect("nats://"+p.Addr(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	r, err := natsreq.New(nc, natsreq.Options{AttemptTimeout: time.Hour, Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	reconnected := make(chan struct{}, 1)
	nc.SetReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} })

	if err := r.Go("svc.q", []byte("lost"), natsreq.CallOpts{Idempotent: true}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.NextMsg(waitLong); err != nil {
		t.Fatalf("the first call: %v", err)
	}
	p.Down()
	eventually.NoError(t, waitLong, func() error {
		if nc.IsConnected() {
			return errors.New("still waiting for the connection to drop")
		}
		return nil
	})
	if err := r.Go("svc.q", []byte("buffered"), natsreq.CallOpts{Idempotent: true}, nil); err != nil {
		t.Fatal(err)
	}
	p.Up()
	<-reconnected
	r.Reconnected()
	// Everything the requester sent is now in svc's queue.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := svcConn.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m, err := svc.NextMsg(0)
		if err != nil {
			break
		}
		got = append(got, string(m.Data))
	}
	slices.Sort(got)
	if want := []string{"buffered", "lost"}; !slices.Equal(got, want) {
		t.Errorf("after the reconnect the service received %q, want %q", got, want)
	}
	if st := r.Stats(); st.InFlight != 2 || st.Resent != 1 {
		t.Errorf("stats %+v, want 2 in flight, 1 resent", st)
	}
}

// TestReconnectBufferFull: while disconnected with the reconnect buffer
// full, an idempotent call stays in flight and is sent after the
// reconnect; a call that is not idempotent fails at once.
func TestReconnectBufferFull(t *testing.T) {
	s := natstest.Run(t)
	respond(t, natstest.Connect(t, s), "svc.q", nil)
	p := faultproxy.New(t, s.Addr().String())
	nc, err := nats.Connect("nats://"+p.Addr(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectBufSize(64))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	r := newRequester(t, nc, natsreq.Options{AttemptTimeout: time.Hour, Timeout: time.Hour})

	p.Down()
	eventually.NoError(t, waitLong, func() error {
		if nc.IsConnected() {
			return errors.New("still waiting for the connection to drop")
		}
		return nil
	})
	big := []byte(strings.Repeat("x", 100))
	if err := nc.Publish("filler", big); err != nil { // the buffer is full after it
		t.Fatal(err)
	}
	if err := r.Go("svc.q", big, natsreq.CallOpts{}, nil); !errors.Is(err, nats.ErrReconnectBufExceeded) {
		t.Errorf("a call that is not idempotent: %v, want reconnect buffer exceeded", err)
	}
	got := make(chan error, 1)
	if err := r.Go("svc.q", big, natsreq.CallOpts{Idempotent: true}, func(m *nats.Msg, err error) {
		if err == nil && string(m.Data) != string(big) {
			err = fmt.Errorf("reply %q", m.Data)
		}
		got <- err
	}); err != nil {
		t.Fatalf("an idempotent call: %v", err)
	}
	p.Up()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// TestConcurrent: many goroutines, each its own answer.
func TestConcurrent(t *testing.T) {
	s := natstest.Run(t)
	respond(t, natstest.Connect(t, s), "svc.echo", nil)
	r := newRequester(t, natstest.Connect(t, s), natsreq.Options{})
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				want := fmt.Sprintf("w%d-%d", w, i)
				if i%2 == 0 {
					m, err := r.Request(context.Background(), "svc.echo", []byte(want), natsreq.CallOpts{Idempotent: true})
					if err != nil || string(m.Data) != want {
						t.Errorf("Request %s: %v", want, err)
					}
					continue
				}
				got := make(chan string, 1)
				if err := r.Go("svc.echo", []byte(want), natsreq.CallOpts{}, answerTo(got)); err != nil {
					t.Error(err)
					continue
				}
				if g := <-got; g != want {
					t.Errorf("Go %s answered %s", want, g)
				}
			}
		})
	}
	wg.Wait()
	if st := r.Stats(); st.InFlight != 0 || st.Late != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestClosedConnection: calls in flight when the connection is closed fail
// at their next attempt timeout, not at their deadline; calls after fail
// at once.
func TestClosedConnection(t *testing.T) {
	s := natstest.Run(t)
	respond(t, natstest.Connect(t, s), "svc.hold", func(*nats.Msg, int) bool { return false })
	nc := natstest.Connect(t, s)
	r := newRequester(t, nc, natsreq.Options{AttemptTimeout: 10 * time.Millisecond, Timeout: time.Hour})
	got := make(chan error, 1)
	if err := r.Go("svc.hold", nil, natsreq.CallOpts{Idempotent: true}, func(_ *nats.Msg, err error) { got <- err }); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if err := <-got; !errors.Is(err, nats.ErrConnectionClosed) || !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("call in flight: %v, want connection closed", err)
	}
	if err := r.Go("svc.hold", nil, natsreq.CallOpts{}, nil); !errors.Is(err, nats.ErrConnectionClosed) {
		t.Errorf("Go: %v, want connection closed", err)
	}
}
