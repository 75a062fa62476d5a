package allinone

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/metricstest"
	"github.com/natter-chat/natter/shared/subject"
)

// statsServices are the services whose $SRV.STATS must match their
// metrics: every one (all start through endpoint.Start).
var statsServices = []string{subject.FriendService, subject.GroupService, subject.UserService, subject.OfflineService}

// TestMicroStatsMatchMetrics sends requests that succeed and requests that
// fail (malformed, refused) to each service, then reads $SRV.STATS over
// NATS, as `nats micro stats` does, and holds it against the Prometheus
// metrics of the same run: per endpoint the same requests and errors.
func TestMicroStatsMatchMetrics(t *testing.T) {
	cfg, reg := testConfig(t)
	sys := startSystem(t, cfg)
	defer sys.Stop(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc, err := nats.Connect("", nats.InProcessServer(sys.ns))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	var reg1 api.RegisterResponse
	if err := api.Call(ctx, nc, subject.UserRegister, api.RegisterRequest{Name: "alice", Password: "pw"}, &reg1); err != nil {
		t.Fatal(err)
	}
	sent := map[string]float64{}
	for _, r := range []struct {
		subj, body string
		fails      bool
	}{
		{subject.FriendAdd, `{"user_id":1,"friend_id":1}`, true},  // yourself
		{subject.FriendAdd, `{"user_id":1,"friend_id":99}`, true}, // no such user
		{subject.FriendAdd, `not json`, true},
		{subject.FriendList, `{"user_id":1}`, false},
		{subject.GroupCreate, `{"user_id":1,"name":"hikers","desc":"x"}`, false},
		{subject.GroupCreate, `{"user_id":0}`, true},
		{subject.GroupMine, `{"user_id":1}`, false},
		{subject.GroupMembers, `[]`, true},
		{subject.UserLookup, `{"ids":[1]}`, false},
		{subject.UserLookup, `{"ids":"1"}`, true},
		{subject.OfflineFetch, `{"user_id":1,"after":0,"limit":10}`, false},
		{subject.OfflineFetch, `{"user_id":"x"}`, true},
	} {
		msg, err := nc.RequestWithContext(ctx, r.subj, []byte(r.body))
		if err != nil {
			t.Fatalf("%s %s: %v", r.subj, r.body, err)
		}
		if failed := api.ErrorFromHeader(msg.Header) != nil; failed != r.fails {
			t.Fatalf("%s %s: failed %v (%s), want %v", r.subj, r.body, failed, msg.Header.Get(micro.ErrorHeader), r.fails)
		}
		switch r.subj {
		case subject.GroupCreate, subject.GroupMine, subject.GroupMembers:
			sent[subject.GroupService]++
		case subject.UserLookup:
			sent[subject.UserService]++
		case subject.OfflineFetch:
			sent[subject.OfflineService]++
		default:
			sent[subject.FriendService]++
		}
	}
	sent[subject.UserService]++ // the registration
	if !errors.Is(api.Call(ctx, nc, subject.FriendAdd, api.FriendRequest{UserID: 1, FriendID: 1}, nil), api.ErrBadRequest) {
		t.Error("befriending yourself: want bad_request through api.Call")
	}
	sent[subject.FriendService]++
	// An answer is counted just after it is sent: wait until the metrics
	// have every one (STATS counts each before the metrics do). The user
	// service also answers the friend service's own lookups: at least
	// what was sent here, and no longer moving.
	for svc, n := range sent {
		eventually.NoError(t, 5*time.Second, func() error {
			got := answered(t, reg, svc)
			if got < n {
				return errors.New(svc + ": every answer counted")
			}
			time.Sleep(50 * time.Millisecond)
			if answered(t, reg, svc) != got {
				return errors.New(svc + ": answers still being counted")
			}
			return nil
		})
	}
	results := []string{"ok", "bad_request", "not_found", "name_taken", "bad_login", "session_live", "busy", "internal"}
	for _, svc := range statsServices {
		subj, err := micro.ControlSubject(micro.StatsVerb, svc, "")
		if err != nil {
			t.Fatal(err)
		}
		msg, err := nc.RequestWithContext(ctx, subj, nil)
		if err != nil {
			t.Fatalf("%s: %v", subj, err)
		}
		var st micro.Stats
		if err := json.Unmarshal(msg.Data, &st); err != nil {
			t.Fatal(err)
		}
		var total int
		for _, e := range st.Endpoints {
			var requests, errs float64
			for _, r := range results {
				n := metricstest.Value(t, reg, "natter_requests_total", map[string]string{"service": svc, "endpoint": e.Name, "result": r})
				requests += n
				if r != "ok" {
					errs += n
				}
			}
			if float64(e.NumRequests) != requests || float64(e.NumErrors) != errs {
				t.Errorf("%s %s: $SRV.STATS num_requests %d, num_errors %d; the metrics count %v and %v",
					svc, e.Name, e.NumRequests, e.NumErrors, requests, errs)
			}
			if e.NumRequests > 0 && e.AverageProcessingTime <= 0 {
				t.Errorf("%s %s: average processing time %v", svc, e.Name, e.AverageProcessingTime)
			}
			total += e.NumErrors
		}
		if total == 0 {
			t.Errorf("%s: no errors in $SRV.STATS after failed requests", svc)
		}
	}
}

// answered sums natter_requests_total of service over every endpoint and
// result.
func answered(t *testing.T, reg *prometheus.Registry, service string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != "natter_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "service" && l.GetValue() == service {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
