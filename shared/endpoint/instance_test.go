package endpoint_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natter-chat/natter/shared/buildinfo"
	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/natstest"
)

// steps records the hooks of an Instance in the order they run.
type steps struct {
	mu   sync.Mutex
	list []string
}

func (s *steps) add(step string) {
	s.mu.Lock()
	s.list = append(s.list, step)
	s.mu.Unlock()
}

func (s *steps) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.list)
}

// instanceConfig is an InstanceConfig named name whose hooks record
// themselves in st, with a runner that records when it has closed.
func instanceConfig(name string, runner *endpoint.Runner, st *steps) endpoint.InstanceConfig {
	return endpoint.InstanceConfig{
		Name:        name,
		Description: "a test service",
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Runners:     []*endpoint.Runner{runner},
		Subscribe:   func() error { st.add("subscribe"); return nil },
		BeforeStop:  func() error { st.add("before stop"); return nil },
		Delivered: func() {
			if !runner.Go(func(context.Context) {}) {
				st.add("delivered: runner closed too soon")
			}
			st.add("delivered")
		},
		AfterStop: func() {
			if runner.Go(func(context.Context) {}) {
				st.add("after stop: runner still open")
			}
			st.add("after stop")
		},
	}
}

// TestInstance starts a service, serves a request, and stops it once, its
// hooks in order around the endpoints' stop.
func TestInstance(t *testing.T) {
	nc := natstest.Connect(t, natstest.Run(t))
	runner := newRunner(2)
	var st steps
	echo := endpoint.JSON(runner, "echo", func(_ context.Context, r *struct{ Text string }) (*struct{ Text string }, error) {
		return r, nil
	})
	in, err := endpoint.Start(context.Background(), nc, instanceConfig("echo", runner, &st),
		endpoint.Spec{Name: "echo", Subject: "test.echo", Description: "echo", Handler: echo})
	if err != nil {
		t.Fatal(err)
	}
	info := in.Service().Info()
	if info.Name != "echo" || info.Version != buildinfo.Release || len(info.Endpoints) != 1 ||
		info.Endpoints[0].QueueGroup != "echo" {
		t.Errorf("info %+v", info)
	}
	// Start returned: the server has the endpoints.
	msg, err := nc.Request("test.echo", []byte(`{"Text":"hi"}`), 5*time.Second)
	if err != nil || string(msg.Data) != `{"Text":"hi"}` {
		t.Fatalf("echo: %v %q", err, msg.Data)
	}
	if got := st.get(); !slices.Equal(got, []string{"subscribe"}) {
		t.Errorf("after Start: %v", got)
	}
	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := in.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	want := []string{"subscribe", "before stop", "delivered", "after stop"}
	if got := st.get(); !slices.Equal(got, want) {
		t.Errorf("steps %v, want %v (each once)", got, want)
	}
	if _, err := nc.Request("test.echo", nil, time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("request after Stop: %v, want no responders", err)
	}
}

// TestInstanceStartFails: a start that fails stops what it started, every
// hook included, and leaves no endpoint behind.
func TestInstanceStartFails(t *testing.T) {
	nc := natstest.Connect(t, natstest.Run(t))
	noop := micro.HandlerFunc(func(micro.Request) {})
	for _, tc := range []struct {
		name    string
		specs   []endpoint.Spec
		failSub bool
		want    string // in the error
	}{
		{"bad endpoint", []endpoint.Spec{{Name: "ok", Subject: "test.ok", Handler: noop}, {Name: "bad name", Subject: "test.bad", Handler: noop}}, false, "add endpoint bad name"},
		{"subscribe fails", []endpoint.Spec{{Name: "ok", Subject: "test.ok", Handler: noop}}, true, "no subscription"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runner := newRunner(1)
			var st steps
			cfg := instanceConfig("failing", runner, &st)
			if tc.failSub {
				cfg.Subscribe = func() error { st.add("subscribe"); return errors.New("no subscription") }
			}
			in, err := endpoint.Start(context.Background(), nc, cfg, tc.specs...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || in != nil {
				t.Fatalf("Start = %v, %v; want an error naming %q", in, err, tc.want)
			}
			got := st.get()
			if tc.failSub {
				got = got[1:]
			}
			if want := []string{"before stop", "delivered", "after stop"}; !slices.Equal(got, want) {
				t.Errorf("steps %v, want %v", got, want)
			}
			if _, err := nc.Request("test.ok", nil, time.Second); !errors.Is(err, nats.ErrNoResponders) {
				t.Errorf("request after a failed start: %v, want no responders", err)
			}
		})
	}
}
