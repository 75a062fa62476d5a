package api_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natter-chat/natter/shared/api"
)

// TestErrorFromHeader reads what Header writes, a bare number from any
// micro service, and an older natter's word.
func TestErrorFromHeader(t *testing.T) {
	h := func(code, desc string) nats.Header {
		return nats.Header{micro.ErrorCodeHeader: {code}, micro.ErrorHeader: {desc}}
	}
	code, desc := api.ErrNameTaken.Header()
	for _, tc := range []struct {
		name string
		h    nats.Header
		want api.Error
	}{
		{"written by Header", h(code, desc), api.Error{Code: api.CodeNameTaken, Message: "name taken"}},
		{"number and word", h("503", "busy: database unavailable; retry"), api.Error{Code: api.CodeBusy, Message: "database unavailable; retry"}},
		{"a bare known number", h("500", "Error handling STATS request: x"), api.Error{Code: api.CodeInternal, Message: "Error handling STATS request: x"}},
		{"an unknown number", h("418", "teapot"), api.Error{Code: "418", Message: "teapot"}},
		{"a word of another number", h("404", "busy: no"), api.Error{Code: api.CodeNotFound, Message: "busy: no"}},
		{"a new word with its number", h("429", "rate_limited: slow down"), api.Error{Code: "rate_limited", Message: "slow down"}},
		{"an older natter's word", h("bad_login", "id or password is invalid"), api.Error{Code: api.CodeBadLogin, Message: "id or password is invalid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := api.ErrorFromHeader(tc.h)
			if got == nil || *got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if got := api.ErrorFromHeader(nats.Header{}); got != nil {
		t.Errorf("no error header: got %+v", got)
	}
	if code != "409" || desc != "name_taken: name taken" {
		t.Errorf("Header: %q, %q", code, desc)
	}
	// A Code holding the number is its word for errors.Is.
	if !errors.Is(&api.Error{Code: "400"}, api.ErrBadRequest) || errors.Is(&api.Error{Code: "401"}, api.ErrBadRequest) {
		t.Error("errors.Is does not read a numeric Code as its word")
	}
}
