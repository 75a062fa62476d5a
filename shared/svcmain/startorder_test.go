package svcmain

import (
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/metricstest"
)

// TestRunWaitsForNATS: a service started before NATS waits for it and
// becomes ready once it is there (a cluster boots in any order).
func TestRunWaitsForNATS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	started := make(chan *server.Server, 1)
	go func() {
		time.Sleep(time.Second) // the service is already trying
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
		if err != nil {
			t.Error(err)
			started <- nil
			return
		}
		go s.Start()
		started <- s
	}()
	t.Cleanup(func() {
		if s := <-started; s != nil {
			s.Shutdown()
			s.WaitForShutdown()
		}
	})
	env, stop := startRun(t, "--nats", "nats://127.0.0.1:"+strconv.Itoa(port),
		"--sqlite", filepath.Join(t.TempDir(), "svc.db"), "--http", "127.0.0.1:0")
	base := "http://" + env.Ops.Addr().String()
	eventually.NoError(t, 10*time.Second, func() error {
		code, _ := metricstest.Get(t, base+"/readyz")
		if code != http.StatusOK {
			return errors.New("still waiting for /readyz to pass once NATS is up")
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
}
