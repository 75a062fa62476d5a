package api_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/api"
)

func TestLoginThrottled(t *testing.T) {
	for _, tc := range []struct {
		retry time.Duration
		msg   string
		want  time.Duration
	}{
		{37 * time.Second, "too many failed logins; retry in 37 s", 37 * time.Second},
		{1500 * time.Millisecond, "too many failed logins; retry in 2 s", 2 * time.Second},
		{time.Millisecond, "too many failed logins; retry in 1 s", time.Second},
		{0, "too many failed logins; retry in 1 s", time.Second},
	} {
		err := api.LoginThrottled(tc.retry)
		if err.Message != tc.msg || !errors.Is(err, api.ErrLoginThrottled) {
			t.Errorf("LoginThrottled(%v) = %q", tc.retry, err.Message)
		}
		if got, ok := api.LoginRetryAfter(fmt.Errorf("login: %w", err)); !ok || got != tc.want {
			t.Errorf("LoginRetryAfter(%q) = %v %v, want %v", err.Message, got, ok, tc.want)
		}
	}
	if _, ok := api.LoginRetryAfter(api.ErrBadLogin); ok {
		t.Error("LoginRetryAfter of a bad login")
	}
}
