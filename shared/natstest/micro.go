package natstest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natter-chat/natter/shared/api"
)

const (
	// discoveryTimeout bounds the wait for a micro discovery answer.
	discoveryTimeout = 5 * time.Second
	// requestTimeout bounds the wait for a service's answer.
	requestTimeout = 10 * time.Second
)

// Info asks the micro service named service for its info ($SRV.INFO) and
// returns the first answer.
func Info(t testing.TB, nc *nats.Conn, service string) micro.Info {
	t.Helper()
	subj, err := micro.ControlSubject(micro.InfoVerb, service, "")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := nc.Request(subj, nil, discoveryTimeout)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	return info
}

// CheckEndpoints asks the micro service named service for its info
// (Info) and checks that it has a version and a description, and
// endpoints on exactly subjects, each in the queue group named service
// and with a description. It returns the info.
func CheckEndpoints(t testing.TB, nc *nats.Conn, service string, subjects ...string) micro.Info {
	t.Helper()
	info := Info(t, nc, service)
	if info.Name != service || info.Version == "" || info.Description == "" {
		t.Errorf("%s: info %+v, want its name, a version and a description", service, info.ServiceIdentity)
	}
	got, want := map[string]string{}, map[string]string{}
	for _, ep := range info.Endpoints {
		got[ep.Subject] = ep.QueueGroup
		if ep.Metadata["description"] == "" {
			t.Errorf("%s: endpoint %s has no description", service, ep.Name)
		}
	}
	for _, s := range subjects {
		want[s] = service
	}
	if !maps.Equal(got, want) {
		t.Errorf("%s: endpoints (subject: queue group) %v, want %v", service, got, want)
	}
	return info
}

// Stats asks every instance of the micro service named service for its
// stats ($SRV.STATS) and waits for want answers.
func Stats(t testing.TB, nc *nats.Conn, service string, want int) []micro.Stats {
	t.Helper()
	subj, err := micro.ControlSubject(micro.StatsVerb, service, "")
	if err != nil {
		t.Fatal(err)
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subj, inbox, nil); err != nil {
		t.Fatal(err)
	}
	var stats []micro.Stats
	for range want {
		msg, err := sub.NextMsg(discoveryTimeout)
		if err != nil {
			t.Fatalf("stats: %d of %d instances answered: %v", len(stats), want, err)
		}
		var s micro.Stats
		if err := json.Unmarshal(msg.Data, &s); err != nil {
			t.Fatal(err)
		}
		stats = append(stats, s)
	}
	return stats
}

// SharedRequests asks the instances of the micro service named service
// for their stats (Stats) and reports an error unless each has served
// requests on the endpoint on subject and together n. Stats count a
// request once it is answered: poll it (eventually.NoError).
func SharedRequests(t testing.TB, nc *nats.Conn, service, subject string, instances, n int) error {
	t.Helper()
	total := 0
	for i, s := range Stats(t, nc, service, instances) {
		served := 0
		for _, ep := range s.Endpoints {
			if ep.Subject == subject {
				served = ep.NumRequests
			}
		}
		if served == 0 {
			return fmt.Errorf("%s: instance %d of %d has served no request yet", subject, i+1, instances)
		}
		total += served
	}
	if total != n {
		return fmt.Errorf("%s: %d of %d requests served", subject, total, n)
	}
	return nil
}

// CheckRefused sends body to subject on nc and checks that it is answered
// with an error that is want (api.ErrBadRequest, say).
func CheckRefused(t testing.TB, nc *nats.Conn, subject, body string, want error) {
	t.Helper()
	msg, err := nc.Request(subject, []byte(body), requestTimeout)
	if err != nil {
		t.Fatalf("%s %q: %v", subject, body, err)
	}
	if err := api.ErrorFromHeader(msg.Header); !errors.Is(err, want) {
		t.Errorf("%s %q: answered %v (code %q), want %v", subject, body, err, msg.Header.Get(micro.ErrorCodeHeader), want)
	}
}
