package names_test

import (
	"testing"

	"github.com/natter-chat/natter/services/user/internal/names"
)

// TestKey: names that differ only by case, width, compatibility forms
// or invisible characters have one key; different names keep different
// keys.
func TestKey(t *testing.T) {
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
			if names.Key(n) != names.Key(group[0]) || names.KeyHash(n) != names.KeyHash(group[0]) {
				t.Errorf("Key(%q) = %q, Key(%q) = %q: want the same", n, names.Key(n), group[0], names.Key(group[0]))
			}
		}
	}
	for _, pair := range [][2]string{
		{"bob", "bob2"},
		{"bob smith", "bobsmith"},
		{"alice", "аlice"}, // Cyrillic а: a look-alike, not the same letter
		{"李", "季"},
	} {
		if names.Key(pair[0]) == names.Key(pair[1]) {
			t.Errorf("Key(%q) == Key(%q)", pair[0], pair[1])
		}
	}
	if h := names.KeyHash("ﷺ"); len(h) != 64 {
		t.Errorf("KeyHash: %d characters, want 64", len(h))
	}
}
