package svcmain

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/metricstest"
	"github.com/natter-chat/natter/shared/natstest"
)

// cliContext parses args with the common flags.
func cliContext(t *testing.T, args ...string) *cli.Context {
	t.Helper()
	set := flag.NewFlagSet("test", flag.ContinueOnError)
	for _, f := range Flags() {
		if err := f.Apply(set); err != nil {
			t.Fatal(err)
		}
	}
	if err := set.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cli.NewContext(cli.NewApp(), set, nil)
}

// echoService is a micro service with one counted endpoint, test.echo.
type echoService struct {
	t        *testing.T
	env      Env
	instance *endpoint.Instance
}

func startEcho(t *testing.T, env Env) (*echoService, error) {
	m, err := endpoint.NewMetrics(env.Registerer, "echo")
	if err != nil {
		return nil, err
	}
	s := &echoService{t: t, env: env}
	runner := endpoint.NewRunner(2, 5*time.Second, env.Log)
	type msg struct{ Text string }
	s.instance, err = endpoint.Start(context.Background(), env.NC,
		endpoint.InstanceConfig{Name: "echo", Log: env.Log, Metrics: m, Runners: []*endpoint.Runner{runner}},
		endpoint.Spec{Name: "echo", Subject: "test.echo", Description: "echo",
			Handler: endpoint.JSON(runner, "echo", func(_ context.Context, r *msg) (*msg, error) { return r, nil })})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *echoService) Stop() error {
	if !s.env.Ops.Draining() {
		s.t.Error("service stopped before readiness was turned off")
	}
	return s.instance.Stop()
}

// startRun runs run with args in the background; it returns the service's
// Env once started and a func that stops run and returns its error.
func startRun(t *testing.T, args ...string) (Env, func() error) {
	t.Helper()
	c := cliContext(t, args...)
	envs := make(chan Env, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, c, "natter-test", slog.New(slog.DiscardHandler), func(ctx context.Context, env Env) (Service, error) {
			envs <- env
			return startEcho(t, env)
		})
	}()
	var env Env
	select {
	case env = <-envs:
	case err := <-done:
		cancel()
		t.Fatalf("run ended before starting: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("service not started")
	}
	var (
		once   sync.Once
		runErr error
	)
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(20 * time.Second):
				runErr = errors.New("run did not return after cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return env, stop
}

// TestRunOps serves /healthz, /readyz and /metrics on --http: ready once
// the service has started, the requests it answered in the metrics (with
// the NATS connection's and the process's), not ready once the database
// is closed, and readiness off before the service is stopped.
func TestRunOps(t *testing.T) {
	ns := natstest.Run(t)
	env, stop := startRun(t, "--nats", ns.ClientURL(), "--sqlite", filepath.Join(t.TempDir(), "svc.db"),
		"--http", "127.0.0.1:0")
	base := "http://" + env.Ops.Addr().String()
	if code, body := metricstest.Get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	eventually.NoError(t, 10*time.Second, func() error {
		code, _ := metricstest.Get(t, base+"/readyz")
		if code != http.StatusOK {
			return errors.New("still waiting for /readyz to pass")
		}
		return nil
	})

	nc := natstest.Connect(t, ns)
	if msg, err := nc.Request("test.echo", []byte(`{"Text":"hi"}`), 5*time.Second); err != nil || !strings.Contains(string(msg.Data), "hi") {
		t.Fatalf("echo: %v %v", msg, err)
	}
	want := []string{
		`natter_requests_total{endpoint="echo",result="ok",service="echo"} 1`,
		`natter_request_duration_seconds_count{endpoint="echo",service="echo"} 1`,
		`natter_nats_disconnects_total{service="test"} 0`,
		`go_goroutines `,
	}
	eventually.NoError(t, 5*time.Second, func() error {
		_, body := metricstest.Get(t, base+"/metrics")
		for _, w := range want {
			if !strings.Contains(body, w) {
				return errors.New("still waiting for the request and NATS counters in /metrics")
			}
		}
		return nil
	})

	env.DB.Close()
	code, body := metricstest.Get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "database") {
		t.Errorf("/readyz with the database closed: %d %s", code, body)
	}
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
	if !env.Ops.Draining() {
		t.Error("not draining after the stop")
	}
}

// TestRunNATSGone is not ready while the NATS server is away.
func TestRunNATSGone(t *testing.T) {
	ns := natstest.Run(t)
	env, stop := startRun(t, "--nats", ns.ClientURL(), "--sqlite", filepath.Join(t.TempDir(), "svc.db"),
		"--http", "127.0.0.1:0")
	base := "http://" + env.Ops.Addr().String()
	eventually.NoError(t, 10*time.Second, func() error {
		code, _ := metricstest.Get(t, base+"/readyz")
		if code != http.StatusOK {
			return errors.New("still waiting for /readyz to pass")
		}
		return nil
	})
	ns.Shutdown()
	eventually.NoError(t, 10*time.Second, func() error {
		code, body := metricstest.Get(t, base+"/readyz")
		if !(code == http.StatusServiceUnavailable && strings.Contains(body, "nats")) {
			return errors.New("still waiting for /readyz to fail without NATS")
		}
		return nil
	})
	if code, _ := metricstest.Get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz without NATS: %d", code)
	}
	eventually.NoError(t, 5*time.Second, func() error {
		_, body := metricstest.Get(t, base+"/metrics")
		if !strings.Contains(body, `natter_nats_disconnects_total{service="test"} 1`) {
			return errors.New("still waiting for the disconnect counted")
		}
		return nil
	})
	// Draining a connection that is reconnecting fails; run still stops.
	_ = stop()
}

// TestRunNkey connects with the nkey seed of --nats-nkey-file to a server
// that requires it.
func TestRunNkey(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	ns := natstest.RunOptions(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})

	dbPath := filepath.Join(t.TempDir(), "svc.db")
	env, stop := startRun(t, "--nats", ns.ClientURL(), "--nats-nkey-file", seedFile, "--sqlite", dbPath)
	if !env.NC.IsConnected() {
		t.Error("not connected")
	}
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}

	// Without the seed the service does not start.
	c := cliContext(t, "--nats", ns.ClientURL(), "--sqlite", dbPath)
	err = run(context.Background(), c, "natter-test", slog.New(slog.DiscardHandler), func(context.Context, Env) (Service, error) {
		t.Error("started without credentials")
		return nil, errors.New("started")
	})
	if err == nil || !strings.Contains(err.Error(), "connect nats") {
		t.Errorf("without the seed: %v", err)
	}
}
