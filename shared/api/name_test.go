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
		{"bob\u3000", false},         // ideographic space
		{"evil\u202Egnp.exe", false}, // right-to-left override
		{"\u2066bob\u2069", false},   // isolates
		{"bob\u200Fx", false},        // right-to-left mark
		{"bob\u2028smith", false},    // line separator
		{"\u200B", false},            // nothing visible
		{"\u00AD\uFE0F", false},      // soft hyphen, variation selector
		{"👨\u200D👩\u200D👧", true},    // a family: joiners inside an emoji sequence
		{"ﷺ", true},                  // one character, eighteen after NFKC
		{"Ｃａｓｅ", true},               // fullwidth
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
