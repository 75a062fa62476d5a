package api

import (
	"unicode"
	"unicode/utf8"
)

// CheckName accepts a user or group name: 1-maxRunes characters of valid
// UTF-8 without control characters, bidirectional controls (an override
// such as U+202E makes a name display as something else), line or
// paragraph separators, or white space at either end, and with at least
// one visible character (not white space, not default-ignorable);
// anything else is a CodeBadRequest *Error saying why. Trailing spaces are refused because MySQL's
// utf8mb4_bin ignores them when comparing, which would make "bob" and
// "bob " the same name there and different ones in SQLite.
func CheckName(name string, maxRunes int) error {
	if !utf8.ValidString(name) {
		return Errorf(CodeBadRequest, "name must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(name); n < 1 || n > maxRunes {
		return Errorf(CodeBadRequest, "name must be 1-%d characters, got %d", maxRunes, n)
	}
	for _, r := range name {
		switch {
		case unicode.IsControl(r):
			return Errorf(CodeBadRequest, "name must not contain control characters")
		case unicode.Is(unicode.Bidi_Control, r):
			return Errorf(CodeBadRequest, "name must not contain bidirectional control characters (U+%04X)", r)
		case unicode.In(r, unicode.Zl, unicode.Zp):
			return Errorf(CodeBadRequest, "name must not contain line or paragraph separators")
		}
	}
	first, _ := utf8.DecodeRuneInString(name)
	last, _ := utf8.DecodeLastRuneInString(name)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return Errorf(CodeBadRequest, "name must not begin or end with white space")
	}
	visible := false
	for _, r := range name {
		if !unicode.IsSpace(r) && !IsDefaultIgnorable(r) {
			visible = true
			break
		}
	}
	if !visible {
		return Errorf(CodeBadRequest, "name must contain a visible character")
	}
	return nil
}

// IsDefaultIgnorable reports Unicode's Default_Ignorable_Code_Point
// property (characters that display as nothing: zero-width spaces and
// joiners, soft hyphens, variation selectors, bidirectional marks),
// derived as Unicode does (DerivedCoreProperties.txt):
// Other_Default_Ignorable_Code_Point, format characters (Cf) and variation
// selectors, minus white space, U+FFF9..U+FFFB, U+13430..U+1343F and the
// prepended concatenation marks.
func IsDefaultIgnorable(r rune) bool {
	if !unicode.In(r, unicode.Other_Default_Ignorable_Code_Point, unicode.Cf, unicode.Variation_Selector) {
		return false
	}
	switch {
	case unicode.Is(unicode.White_Space, r), r >= 0xFFF9 && r <= 0xFFFB, r >= 0x13430 && r <= 0x1343F,
		unicode.Is(unicode.Prepended_Concatenation_Mark, r):
		return false
	}
	return true
}
