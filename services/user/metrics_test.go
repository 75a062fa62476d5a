package user_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natter-chat/natter/services/user"
	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/dbtest"
	"github.com/natter-chat/natter/shared/eventually"
	"github.com/natter-chat/natter/shared/metricstest"
	"github.com/natter-chat/natter/shared/subject"
)

// TestMetrics counts registrations and logins by result, resumes, kicks,
// the requests of every endpoint and the database work, all labelled
// service="user", on the registry of the configuration.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := testConfig(user.PolicyKick)
	cfg.Registerer = reg
	e := newEnv(t, dbtest.SQLite(t), cfg)
	uid := e.register(t, "alice", "secret")
	if err := e.call(t, subject.UserRegister, api.RegisterRequest{Name: "alice", Password: "x"}, nil); !errors.Is(err, api.ErrNameTaken) {
		t.Fatalf("second register: %v", err)
	}
	first, err := e.login(t, uid, "secret", "gw", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.login(t, uid, "wrong", "gw", "s2"); !errors.Is(err, api.ErrBadLogin) {
		t.Fatalf("wrong password: %v", err)
	}
	var resumed api.LoginResponse
	if err := e.call(t, subject.UserLogin, api.LoginRequest{UserID: uid, ResumeToken: first.ResumeToken,
		GatewayID: "gw", SessionID: "s3"}, &resumed); err != nil || resumed.Replaced != "s1" {
		t.Fatalf("resume: %+v, %v", resumed, err)
	}

	eventually.NoError(t, 5*time.Second, func() error {
		if got := metricstest.Value(t, reg, "natter_request_duration_seconds", map[string]string{"endpoint": "login"}); got != 3 {
			return fmt.Errorf("still waiting for 3 logins answered: got %v, want == 3", got)
		}
		return nil
	})
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"natter_user_registrations_total", map[string]string{"service": "user", "result": "ok"}, 1},
		{"natter_user_registrations_total", map[string]string{"result": "name_taken"}, 1},
		{"natter_user_logins_total", map[string]string{"service": "user", "method": "password", "result": "ok"}, 1},
		{"natter_user_logins_total", map[string]string{"method": "password", "result": "bad_login"}, 1},
		{"natter_user_logins_total", map[string]string{"method": "resume", "result": "ok"}, 1},
		{"natter_user_logins_total", map[string]string{"method": "resume", "result": "bad_login"}, 0},
		{"natter_user_kicks_total", map[string]string{"service": "user"}, 1},
		{"natter_requests_total", map[string]string{"service": "user", "endpoint": "login", "result": "ok"}, 2},
		{"natter_requests_total", map[string]string{"endpoint": "login", "result": "bad_login"}, 1},
		{"natter_requests_total", map[string]string{"endpoint": "register", "result": "name_taken"}, 1},
		{"natter_db_errors_total", map[string]string{"service": "user", "op": "tx", "kind": "duplicate"}, 1},
	} {
		if got := metricstest.Value(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if n := metricstest.Value(t, reg, "natter_db_operation_duration_seconds", map[string]string{"service": "user", "op": "tx"}); n == 0 {
		t.Error("no transactions timed")
	}
}
