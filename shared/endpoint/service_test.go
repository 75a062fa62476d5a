package endpoint_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/endpoint"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/metricstest"
	"github.com/natter-chat/natter/shared/natstest"
)

// statsOver asks $SRV.STATS.name over NATS, as `nats micro stats` does,
// and decodes the one answer.
func statsOver(t *testing.T, nc *nats.Conn, name string) micro.Stats {
	t.Helper()
	subj, err := micro.ControlSubject(micro.StatsVerb, name, "")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := nc.Request(subj, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subj, err)
	}
	var st micro.Stats
	if err := json.Unmarshal(msg.Data, &st); err != nil {
		t.Fatalf("%s: %v: %s", subj, err, msg.Data)
	}
	if st.Type != micro.StatsResponseType {
		t.Errorf("%s: type %q, want %q", subj, st.Type, micro.StatsResponseType)
	}
	return st
}

// TestStatsCountAnswers: $SRV.STATS, read over NATS after ok answers,
// errors of each kind (a handler's api error, an internal error, a
// malformed request) and slow answers, carries the same figures as the
// Prometheus metrics: requests, errors, and the time to the answer (not
// the time the detached handler took to hand the request on).
func TestStatsCountAnswers(t *testing.T) {
	nc, svc := newService(t, "counted")
	reg := prometheus.NewRegistry()
	m, err := endpoint.NewMetrics(reg, "counted")
	if err != nil {
		t.Fatal(err)
	}
	runner := newRunner(4)
	t.Cleanup(runner.Close)
	const slow = 30 * time.Millisecond
	type req struct{ N int }
	echo := endpoint.JSON(runner, "echo", func(ctx context.Context, r *req) (*req, error) {
		switch {
		case r.N < 0:
			return nil, api.Errorf(api.CodeBadRequest, "negative")
		case r.N == 0:
			return nil, errors.New("boom") // answered internal
		case r.N > 100:
			select { // an answer that takes a while, like a bcrypt
			case <-time.After(slow):
			case <-ctx.Done():
			}
		}
		return r, nil
	})
	if err := endpoint.Add(svc, nc, m, endpoint.Spec{Name: "echo", Subject: "test.echo", Description: "echo", Handler: echo}); err != nil {
		t.Fatal(err)
	}
	bodies := []string{`{"N":1}`, `{"N":101}`, `{"N":102}`, `{"N":-1}`, `{"N":0}`, `not json`, `{"N":-2}`}
	for _, body := range bodies {
		if _, err := nc.Request("test.echo", []byte(body), 5*time.Second); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
	}
	labels := map[string]string{"service": "counted", "endpoint": "echo"}
	eventually.NoError(t, 5*time.Second, func() error {
		if got := metricstest.Value(t, reg, "natter_request_duration_seconds", labels); got != float64(len(bodies)) {
			return fmt.Errorf("still waiting for every answer counted: got %v, want == float64(len(bodies))", got)
		}
		return nil
	})

	st := statsOver(t, nc, "counted")
	if len(st.Endpoints) != 1 || st.Endpoints[0].Name != "echo" {
		t.Fatalf("STATS endpoints %+v, want echo", st.Endpoints)
	}
	e := st.Endpoints[0]
	var requests, errs float64
	for _, result := range []string{"ok", "bad_request", "internal"} {
		n := metricstest.Value(t, reg, "natter_requests_total", map[string]string{"service": "counted", "endpoint": "echo", "result": result})
		requests += n
		if result != "ok" {
			errs += n
		}
	}
	if requests != float64(len(bodies)) || errs != 4 {
		t.Fatalf("metrics: %v requests, %v errors; want %d and 4", requests, errs, len(bodies))
	}
	if float64(e.NumRequests) != requests || float64(e.NumErrors) != errs {
		t.Errorf("STATS: num_requests %d, num_errors %d; the metrics count %v and %v", e.NumRequests, e.NumErrors, requests, errs)
	}
	// The last error was the -2: bad_request, its number and word.
	if !strings.HasPrefix(e.LastError, "400:bad_request: ") {
		t.Errorf("STATS last_error %q, want 400:bad_request: ...", e.LastError)
	}
	sum := metricstest.HistogramSum(t, reg, "natter_request_duration_seconds", labels)
	if d := math.Abs(e.ProcessingTime.Seconds() - sum); d > 1e-6 {
		t.Errorf("STATS processing_time %v, the metrics' sum %vs", e.ProcessingTime, sum)
	}
	// Two answers waited 30 ms each: the total is at least that, whatever
	// the machine's speed.
	if e.ProcessingTime < 2*slow {
		t.Errorf("STATS processing_time %v: less than the two slow answers (%v each)", e.ProcessingTime, slow)
	}
	if e.AverageProcessingTime != e.ProcessingTime/time.Duration(e.NumRequests) {
		t.Errorf("STATS average %v, want %v / %d", e.AverageProcessingTime, e.ProcessingTime, e.NumRequests)
	}

	svc.Reset()
	if st := statsOver(t, nc, "counted"); st.Endpoints[0].NumRequests != 0 || st.Endpoints[0].NumErrors != 0 {
		t.Errorf("after Reset: %+v", st.Endpoints[0])
	}
}

// TestServiceDiscovery: PING, INFO and STATS answer on every subject
// ADR-32 names ($SRV.VERB, $SRV.VERB.name, $SRV.VERB.name.id), with the
// service's identity; INFO lists the endpoints with their queue group.
func TestServiceDiscovery(t *testing.T) {
	ns := natstest.Run(t)
	nc := natstest.Connect(t, ns)
	svc, err := endpoint.AddService(nc, micro.Config{Name: "disco", Version: "1.2.3", Description: "discovery",
		Metadata: map[string]string{"k": "v"}, QueueGroup: "disco",
		StatsHandler: func(e *micro.Endpoint) any { return map[string]string{"endpoint": e.Name} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	h := micro.HandlerFunc(func(r micro.Request) { r.Respond(r.Data()) })
	if err := endpoint.Add(svc, nc, nil, endpoint.Spec{Name: "one", Subject: "disco.one", Description: "first", Handler: h}); err != nil {
		t.Fatal(err)
	}
	id := svc.Info().ID
	for _, verb := range []micro.Verb{micro.PingVerb, micro.InfoVerb, micro.StatsVerb} {
		for _, at := range [][2]string{{"", ""}, {"disco", ""}, {"disco", id}} {
			subj, err := micro.ControlSubject(verb, at[0], at[1])
			if err != nil {
				t.Fatal(err)
			}
			msg, err := nc.Request(subj, nil, 5*time.Second)
			if err != nil {
				t.Errorf("%s: %v", subj, err)
				continue
			}
			var got struct {
				micro.ServiceIdentity
				Type        string               `json:"type"`
				Description string               `json:"description"`
				Endpoints   []micro.EndpointInfo `json:"endpoints"`
			}
			if err := json.Unmarshal(msg.Data, &got); err != nil {
				t.Fatalf("%s: %v", subj, err)
			}
			if got.Name != "disco" || got.ID != id || got.Version != "1.2.3" || got.Metadata["k"] != "v" {
				t.Errorf("%s: identity %+v", subj, got.ServiceIdentity)
			}
			want := map[micro.Verb]string{micro.PingVerb: micro.PingResponseType, micro.InfoVerb: micro.InfoResponseType, micro.StatsVerb: micro.StatsResponseType}[verb]
			if got.Type != want {
				t.Errorf("%s: type %q, want %q", subj, got.Type, want)
			}
			if verb == micro.InfoVerb && (len(got.Endpoints) != 1 || got.Endpoints[0].Subject != "disco.one" ||
				got.Endpoints[0].QueueGroup != "disco" || got.Endpoints[0].Metadata["description"] != "first" || got.Description != "discovery") {
				t.Errorf("%s: %+v", subj, got)
			}
		}
	}
	if st := statsOver(t, nc, "disco"); string(st.Endpoints[0].Data) != `{"endpoint":"one"}` {
		t.Errorf("STATS data %s, want the StatsHandler's", st.Endpoints[0].Data)
	}
	if err := svc.AddEndpoint("x", h); err == nil {
		t.Error("AddEndpoint on endpoint.Service: no error")
	}
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}
	if !svc.Stopped() {
		t.Error("not stopped after Stop")
	}
	if _, err := nc.Request("$SRV.PING.disco", nil, time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("PING after Stop: %v, want no responders", err)
	}
}

// TestErrorHeaders: an error answer carries the code as a number in
// Nats-Service-Error-Code, as ADR-32 says a client parses it, and the word
// at the start of Nats-Service-Error; api.Call gives the word back.
func TestErrorHeaders(t *testing.T) {
	nc, svc := newService(t, "errs")
	runner := newRunner(2)
	t.Cleanup(runner.Close)
	codes := []api.Code{api.CodeBadRequest, api.CodeNotFound, api.CodeNameTaken, api.CodeBadLogin,
		api.CodeSessionLive, api.CodeBusy, api.CodeInternal}
	type req struct{ I int }
	h := endpoint.JSON(runner, "fail", func(_ context.Context, r *req) (*struct{}, error) {
		return nil, api.Errorf(codes[r.I], "failure %d", r.I)
	})
	if err := endpoint.Add(svc, nc, nil, endpoint.Spec{Name: "fail", Subject: "test.fail", Description: "fails", Handler: h}); err != nil {
		t.Fatal(err)
	}
	seen := map[int]api.Code{}
	for i, c := range codes {
		msg, err := nc.Request("test.fail", []byte(`{"I":`+strconv.Itoa(i)+`}`), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// What a client in another language does: parse the code as a
		// number.
		n, err := strconv.Atoi(msg.Header.Get(micro.ErrorCodeHeader))
		if err != nil || n < 100 || n > 599 {
			t.Errorf("%s: Nats-Service-Error-Code %q, want a number", c, msg.Header.Get(micro.ErrorCodeHeader))
		}
		if other, dup := seen[n]; dup {
			t.Errorf("%s and %s share the number %d", c, other, n)
		}
		seen[n] = c
		if n != c.Number() {
			t.Errorf("%s: number %d, want %d", c, n, c.Number())
		}
		if d, want := msg.Header.Get(micro.ErrorHeader), string(c)+": failure "+strconv.Itoa(i); d != want {
			t.Errorf("%s: Nats-Service-Error %q, want %q", c, d, want)
		}
		err = api.Call(context.Background(), nc, "test.fail", req{I: i}, nil)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != c || ae.Message != "failure "+strconv.Itoa(i) {
			t.Errorf("api.Call: %#v, want code %s", err, c)
		}
		if !errors.Is(err, &api.Error{Code: c}) {
			t.Errorf("errors.Is(%v, %s) is false", err, c)
		}
	}
}
