package endpoint_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/natstest"
)

// newService adds a service named name (endpoint.AddService) on a
// connection to a test server, stopped when the test ends.
func newService(t *testing.T, name string) (*nats.Conn, micro.Service) {
	t.Helper()
	nc := natstest.Connect(t, natstest.Run(t))
	svc, err := endpoint.AddService(nc, micro.Config{Name: name, Version: "1.0.0", QueueGroup: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return nc, svc
}

func newRunner(limit int) *endpoint.Runner {
	return endpoint.NewRunner(limit, 5*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// TestAdd registers endpoints with their subjects and descriptions, and
// hands them detached requests, which may be answered from any goroutine.
func TestAdd(t *testing.T) {
	nc, svc := newService(t, "echo")
	answerLater := micro.HandlerFunc(func(m micro.Request) {
		go m.Respond(m.Data()) // safe only on a detached request
	})
	err := endpoint.Add(svc, nc, nil,
		endpoint.Spec{Name: "one", Subject: "test.echo.one", Description: "echo, later", Handler: answerLater},
		endpoint.Spec{Name: "two", Subject: "test.echo.two", Description: "echo, later, few pending",
			Handler: answerLater, PendingMsgs: 10, PendingBytes: -1},
	)
	if err != nil {
		t.Fatal(err)
	}

	info := svc.Info()
	want := map[string]string{"test.echo.one": "echo, later", "test.echo.two": "echo, later, few pending"}
	if len(info.Endpoints) != len(want) {
		t.Fatalf("endpoints %+v, want %v", info.Endpoints, want)
	}
	for _, ep := range info.Endpoints {
		if d := ep.Metadata["description"]; d != want[ep.Subject] {
			t.Errorf("%s: description %q, want %q", ep.Subject, d, want[ep.Subject])
		}
		if ep.QueueGroup != "echo" {
			t.Errorf("%s: queue group %q, want echo", ep.Subject, ep.QueueGroup)
		}
	}
	for subj := range want {
		msg, err := nc.Request(subj, []byte("hi"), 5*time.Second)
		if err != nil || string(msg.Data) != "hi" {
			t.Errorf("%s: answered %v, %v; want hi", subj, msg, err)
		}
	}
}

// TestAddFails names the endpoint that could not be added.
func TestAddFails(t *testing.T) {
	nc, svc := newService(t, "bad")
	runner := newRunner(1)
	t.Cleanup(runner.Close)
	h := endpoint.JSON(runner, "x", func(context.Context, *struct{}) (*struct{}, error) { return nil, nil })
	err := endpoint.Add(svc, nc, nil,
		endpoint.Spec{Name: "good", Subject: "test.good", Description: "fine", Handler: h},
		endpoint.Spec{Name: "bad", Subject: "test bad", Description: "a space in the subject", Handler: h},
	)
	if !errors.Is(err, micro.ErrConfigValidation) {
		t.Fatalf("got %v, want %v", err, micro.ErrConfigValidation)
	}
	if !strings.HasPrefix(err.Error(), "add endpoint bad: ") {
		t.Errorf("error %q does not name the endpoint", err)
	}
}

// TestStop stops the service, then closes the runners once the handlers
// they run have returned.
func TestStop(t *testing.T) {
	nc, svc := newService(t, "slow")
	runner := newRunner(2)
	started, finish := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	h := endpoint.JSON(runner, "slow", func(context.Context, *struct{}) (*struct{}, error) {
		close(started)
		<-finish
		finished.Store(true)
		return &struct{}{}, nil
	})
	if err := endpoint.Add(svc, nc, nil, endpoint.Spec{Name: "slow", Subject: "test.slow", Description: "waits", Handler: h}); err != nil {
		t.Fatal(err)
	}
	answer := make(chan error, 1)
	go func() {
		_, err := nc.Request("test.slow", []byte(`{}`), 5*time.Second)
		answer <- err
	}()
	<-started
	time.AfterFunc(50*time.Millisecond, func() { close(finish) })
	if err := endpoint.Stop(svc, nc, runner); err != nil {
		t.Fatal(err)
	}
	if !finished.Load() {
		t.Error("Stop returned before the handler did")
	}
	if err := <-answer; err != nil {
		t.Errorf("request in flight: %v", err)
	}
	if runner.Go(func(context.Context) {}) {
		t.Error("runner still runs work after Stop")
	}
	if _, err := nc.Request("test.slow", []byte(`{}`), time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("request after Stop: %v, want no responders", err)
	}

	// Without a service (a failed start) and on a closed connection, Stop
	// only closes the runners.
	nc.Close()
	other := newRunner(1)
	if err := endpoint.Stop(nil, nc, other); err != nil {
		t.Errorf("stop without a service: %v", err)
	}
	if other.Go(func(context.Context) {}) {
		t.Error("runner still runs work after Stop")
	}
}

// TestStopAnswersDelivered: requests that reached the service before Stop,
// still queued in its subscription behind a busy handler, are all handled
// and answered, none refused busy.
func TestStopAnswersDelivered(t *testing.T) {
	nc, svc := newService(t, "queued")
	runner := newRunner(1)
	release := make(chan struct{})
	var handled atomic.Int64
	h := endpoint.JSON(runner, "queued", func(context.Context, *struct{}) (*struct{}, error) {
		<-release
		handled.Add(1)
		return &struct{}{}, nil
	})
	if err := endpoint.Add(svc, nc, nil, endpoint.Spec{Name: "queued", Subject: "test.queued", Description: "queues", Handler: h}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the server has the subscriptions
		t.Fatal(err)
	}
	client, err := nats.Connect(nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const n = 50
	inbox := nats.NewInbox()
	answers, err := client.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := client.PublishRequest("test.queued", inbox, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Flush(); err != nil {
		t.Fatal(err)
	}
	// Wait until every request has reached the service's connection.
	eventually.NoError(t, 10*time.Second, func() error {
		if got := nc.Stats().InMsgs; got < n {
			return fmt.Errorf("service connection received %d of %d requests", got, n)
		}
		return nil
	})
	time.AfterFunc(20*time.Millisecond, func() { close(release) })
	if err := endpoint.Stop(svc, nc, runner); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		msg, err := answers.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("answer %d of %d: %v", i+1, n, err)
		}
		if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
			t.Fatalf("answer %d of %d: error %s %s", i+1, n, code, msg.Header.Get(micro.ErrorHeader))
		}
	}
	if got := handled.Load(); got != n {
		t.Errorf("handled %d of %d", got, n)
	}
}
