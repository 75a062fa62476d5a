package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/shared/ops"
)

// opsGateway is one more gateway of a cluster, configured by the test, with
// its metrics and readiness served by an ops server on a random port.
type opsGateway struct {
	g   *gateway.Gateway
	ops *ops.Server
	url string // http://host:port of the ops server
}

// startOpsGateway starts a gateway on c with the defaults adjusted by
// tweak, serving /metrics and /readyz (checked by the gateway's Ready).
func startOpsGateway(t *testing.T, c *cluster, tweak func(*gateway.Config)) *opsGateway {
	t.Helper()
	o := ops.New(nil, testLogger(t))
	if err := o.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		o.Close(ctx)
	})
	cfg := gateway.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Registerer = o.Registry()
	if tweak != nil {
		tweak(&cfg)
	}
	g := startGateway(t, c.conn(), cfg)
	o.AddCheck("gateway", g.Ready)
	return &opsGateway{g: g, ops: o, url: "http://" + o.Addr().String()}
}

// get fetches path from the ops server.
func (o *opsGateway) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(o.url + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// metrics scrapes /metrics into series (name with its labels, as the text
// format writes them, e.g. natter_gateway_logins_total{method="password",result="ok"})
// -> value.
func (o *opsGateway) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	code, body := o.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d", code)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// metric is one series' value (0 when absent).
func (o *opsGateway) metric(t *testing.T, series string) float64 {
	t.Helper()
	return o.metrics(t)[series]
}
