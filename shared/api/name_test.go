package api_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/natter-chat/natter/shared/api"
)

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"Zoë 🚀 李", true},
		{"bob smith", true},
		{strings.Repeat("名", 10), true},
		{strings.Repeat("名", 11), false},
		{strings.Repeat("a", 11), false},
		{"", false},
		{"\xff", false},
		{"bob\x07", false},
		{"bob\nsmith", false},
		{" bob", false},
		{"bob ", false},
		{"bob\u3000", false}, // ideographic space
	}
	for _, tt := range tests {
		err := api.CheckName(tt.name, 10)
		if tt.ok && err != nil {
			t.Errorf("CheckName(%q) = %v, want ok", tt.name, err)
		}
		if !tt.ok && !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("CheckName(%q) = %v, want %v", tt.name, err, api.ErrBadRequest)
		}
	}
}
