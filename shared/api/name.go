package api

import (
	"unicode"
	"unicode/utf8"
)

// CheckName accepts a user or group name: 1-maxRunes characters of valid
// UTF-8 without control characters or white space at either end; anything
// else is a CodeBadRequest *Error saying why. Trailing spaces are refused
// because MySQL's utf8mb4_bin ignores them when comparing, which would make
// "bob" and "bob " the same name there and different ones in SQLite.
func CheckName(name string, maxRunes int) error {
	if !utf8.ValidString(name) {
		return Errorf(CodeBadRequest, "name must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(name); n < 1 || n > maxRunes {
		return Errorf(CodeBadRequest, "name must be 1-%d characters, got %d", maxRunes, n)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return Errorf(CodeBadRequest, "name must not contain control characters")
		}
	}
	first, _ := utf8.DecodeRuneInString(name)
	last, _ := utf8.DecodeLastRuneInString(name)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return Errorf(CodeBadRequest, "name must not begin or end with white space")
	}
	return nil
}
