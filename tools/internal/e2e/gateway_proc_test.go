package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/eventually"
)

// TestGatewayProcessDrainsOnSIGTERM runs natter-gateway as a process next
// to natter serve: /readyz is 200 while it serves and /metrics has its
// metrics and its NATS connection's; on SIGTERM /readyz turns 503, its clients are told to reconnect
// and closed over the drain window, and the process exits cleanly.
func TestGatewayProcessDrainsOnSIGTERM(t *testing.T) {
	srv := startProc(t, "natter", "serve", "--listen", anyPort, "--nats-listen", anyPort, "--data", t.TempDir(), "--bcrypt-cost", "4")
	natsAddr := srv.listenAddr(logNATS)
	g := startProc(t, "natter-gateway", "--nats", "nats://"+natsAddr, "--listen", anyPort, "--http", anyPort,
		"--drain-window", "3s")
	addr, httpAddr := g.tcpAddr(logTCP), g.listenAddr(logOps)

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eventually.NoError(t, 10*time.Second, func() error {
		code, _ := get("/readyz")
		if code != http.StatusOK {
			return errors.New("natter-gateway not ready")
		}
		return nil
	})

	const n = 3
	var cs []*client
	for i := range n {
		cl := dial(t, addr, '\n', fmt.Sprint("c", i))
		id := cl.register(fmt.Sprint("user", i), "pw")
		cl.login(id, "pw")
		cs = append(cs, cl)
	}
	if code, body := get("/metrics"); code != http.StatusOK ||
		!strings.Contains(body, "natter_gateway_connections 3") ||
		!strings.Contains(body, `natter_gateway_logins_total{method="password",result="ok"} 3`) ||
		!strings.Contains(body, `natter_nats_reconnects_total{service="gateway"} 0`) {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}

	g.cmd.Process.Signal(syscall.SIGTERM)
	eventually.NoError(t, 5*time.Second, func() error {
		code, _ := get("/readyz")
		if code != http.StatusServiceUnavailable {
			return errors.New("natter-gateway still ready after SIGTERM")
		}
		return nil
	})
	for _, cl := range cs {
		f := cl.expect(22)
		if f.num("errno") != 113 {
			t.Fatalf("%s: %v, want RECONNECT with errno 113", cl.name, f)
		}
		if s, err := cl.recvRaw(10 * time.Second); err == nil {
			t.Fatalf("%s: got %q after RECONNECT, want the connection closed", cl.name, s)
		}
	}
	select {
	case err := <-g.done:
		g.done <- err
		if err != nil {
			t.Fatalf("natter-gateway exited with %v\n%s", err, g.out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("natter-gateway did not exit after its drain")
	}
	if c, err := net.Dial("tcp", addr.String()); err == nil {
		c.Close()
		t.Fatal("natter-gateway still accepts connections after it exited")
	}
}
