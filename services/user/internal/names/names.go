// Package names gives user names the form under which two of them are the
// same name (Key), and that form as a fixed-size digest for a unique index
// (KeyHash). What a name may contain at all is api.CheckName's.
package names

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/natter-chat/natter/shared/api"
)

// Key is the form under which two names are the same name: Unicode
// compatibility normalisation (NFKC: fullwidth letters, ligatures and
// other compatibility forms become their plain equivalents), case folding
// (CASE, case and Case are one name; so are Straße and STRASSE), then NFKC
// again, with default-ignorable code points (zero-width spaces and
// joiners, soft hyphens, variation selectors, bidirectional marks)
// removed. It approximates Unicode's NFKC_Casefold. Letters that merely
// look alike in different scripts (Latin a, Cyrillic а) stay different.
func Key(name string) string {
	s := norm.NFKC.String(name)
	s = cases.Fold().String(s)
	s = norm.NFKC.String(s)
	return strings.Map(func(r rune) rune {
		if api.IsDefaultIgnorable(r) {
			return -1
		}
		return r
	}, s)
}

// KeyHash is Key as 64 hex digits (SHA-256): what a unique index holds,
// whatever the name's length after normalisation (one character can
// become eighteen).
func KeyHash(name string) string {
	sum := sha256.Sum256([]byte(Key(name)))
	return hex.EncodeToString(sum[:])
}
