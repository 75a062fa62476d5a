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

// TestNameKey: names that differ only by case, width, compatibility forms
// or invisible characters have one key; different names keep different
// keys.
func TestNameKey(t *testing.T) {
	same := [][]string{
		{"case", "CASE", "Case", "ｃａｓｅ", "ＣＡＳＥ", "c\u200Base", "ca\u00ADse", "cas\u200De"},
		{"straße", "STRASSE", "Strasse"},
		{"ﬁle", "file", "FILE"},
		{"bob smith", "bob\u00A0smith", "BOB SMITH"},
		{"é", "e\u0301", "É"},
		{"Zoë 🚀", "ZOË 🚀", "zoë 🚀\uFE0F"},
	}
	for _, group := range same {
		for _, n := range group[1:] {
			if api.NameKey(n) != api.NameKey(group[0]) || api.NameKeyHash(n) != api.NameKeyHash(group[0]) {
				t.Errorf("NameKey(%q) = %q, NameKey(%q) = %q: want the same", n, api.NameKey(n), group[0], api.NameKey(group[0]))
			}
		}
	}
	for _, pair := range [][2]string{
		{"bob", "bob2"},
		{"bob smith", "bobsmith"},
		{"alice", "аlice"}, // Cyrillic а: a look-alike, not the same letter
		{"李", "季"},
	} {
		if api.NameKey(pair[0]) == api.NameKey(pair[1]) {
			t.Errorf("NameKey(%q) == NameKey(%q)", pair[0], pair[1])
		}
	}
	if h := api.NameKeyHash("ﷺ"); len(h) != 64 {
		t.Errorf("NameKeyHash: %d characters, want 64", len(h))
	}
}
