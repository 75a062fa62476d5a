//go:build cluster

package clustertest

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/eventually"
)

// TestClusterHalfClosedClient brings up the local cluster and checks what
// the fault test does not: a client that sends its requests and
// half-closes its socket (`printf '...' | nc host port`) gets every reply
// through nginx's stream proxy (proxy_half_close), and Prometheus scrapes
// every natter process with natter's alerting rules loaded.
func TestClusterHalfClosedClient(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash is needed")
	}
	h := newHarness(t, false)
	h.up()
	env := map[string]string{}
	for _, line := range strings.Split(h.cluster("env"), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = strings.Trim(strings.TrimSpace(v), "'")
		}
	}

	// Two requests, then the client's FIN: both replies must come back.
	conn, err := net.Dial("tcp", env["NATTER_CLUSTER_ADDR"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("{\"msgid\":11,\"reqid\":\"p\"}\n{\"msgid\":4,\"name\":\"halfclosed\",\"password\":\"pw\"}\n")); err != nil {
		t.Fatal(err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	var ids []int
	for range 2 {
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("half-closed client through nginx: replies %v, then %v (nginx without proxy_half_close sends nothing)", ids, err)
		}
		var f struct{ MsgID, Errno int }
		if err := json.Unmarshal(line, &f); err != nil || f.Errno != 0 {
			t.Fatalf("reply %s: %v", line, err)
		}
		ids = append(ids, f.MsgID)
	}
	if ids[0] != 12 || ids[1] != 5 {
		t.Errorf("replies %v, want a PONG (12) and a REG_ACK (5)", ids)
	}

	// Prometheus: every natter process up, the rules loaded.
	prom := strings.TrimSuffix(env["NATTER_CLUSTER_PROMETHEUS_URL"], "/")
	if prom == "" {
		t.Fatal("cluster.sh env printed no NATTER_CLUSTER_PROMETHEUS_URL")
	}
	var targets []string
	eventually.NoError(t, 60*time.Second, func() error {
		var res struct {
			Data struct {
				Result []struct {
					Metric map[string]string
					Value  []any
				}
			}
		}
		targets = nil
		if err := getJSON(prom+"/api/v1/query?query=up", &res); err != nil {
			return errors.New("still waiting for Prometheus: every natter target up")
		}
		for _, s := range res.Data.Result {
			if strings.HasPrefix(s.Metric["job"], "natter-") && s.Value[1] == "1" {
				targets = append(targets, s.Metric["instance"])
			}
		}
		if len(targets) != 10 {
			return errors.New("still waiting for Prometheus: every natter target up")
		}
		return nil // 2 gateways, 2 of each of the 4 services
	})
	var rules struct {
		Data struct {
			Groups []struct{ Rules []struct{ Name string } }
		}
	}
	if err := getJSON(prom+"/api/v1/rules", &rules); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rules.Data.Groups {
		n += len(g.Rules)
	}
	if n < 10 {
		t.Errorf("Prometheus has %d rules loaded, want natter's alerting rules", n)
	}
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
