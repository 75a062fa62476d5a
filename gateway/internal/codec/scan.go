package codec

import (
	"encoding/binary"
	"math/bits"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The JSON grammar exactly as encoding/json's checkValid accepts it
// (scanner.go there): its whitespace, its string escapes, its numbers, its
// literals and its nesting limit. Bytes >= 0x80 are accepted in strings
// whether or not they are valid UTF-8.

// maxDepth is encoding/json's maxNestingDepth: a container nested deeper
// (the top-level object counts as 1) is refused.
const maxDepth = 10000

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(src []byte, i int) int {
	for i < len(src) && isSpace(src[i]) {
		i++
	}
	return i
}

// plain marks the bytes a string holds as themselves: printable ASCII
// but '"' and '\\' (0x7f included, as encoding/json writes it unescaped).
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// Words of 8 bytes, for scanning strings 8 bytes at a time.
const (
	lsb = 0x0101010101010101 // 1 in every byte
	msb = 0x8080808080808080 // 0x80 in every byte
)

// scanString scans the string whose opening quote is src[i]. It returns
// the index after the closing quote and the string's strEsc and strHigh
// flags. Runs of plain bytes are skipped 8 at a time.
func scanString(src []byte, i int) (end int, fl uint8, ok bool) {
	for i++; ; {
		for i+8 <= len(src) {
			w := binary.LittleEndian.Uint64(src[i:])
			// A byte is special if it is '"', '\\' or below 0x20. These
			// tests are exact for the word, and their lowest set bit is
			// the first special byte (a false hit only ever follows a true
			// one). Bytes >= 0x80 are not special here.
			q, b := w^(lsb*'"'), w^(lsb*'\\')
			special := ((q-lsb)&^q | (b-lsb)&^b | (w-lsb*0x20)&^w) & msb
			if special == 0 {
				if w&msb != 0 {
					fl |= strHigh
				}
				i += 8
				continue
			}
			k := bits.TrailingZeros64(special) >> 3
			if w&msb&(1<<(8*k)-1) != 0 {
				fl |= strHigh
			}
			i += k
			break
		}
		if i == len(src) {
			return 0, 0, false
		}
		c := src[i]
		if plain[c] {
			i++
			continue
		}
		switch {
		case c == '"':
			return i + 1, fl, true
		case c == '\\':
			fl |= strEsc
			if i+1 == len(src) {
				return 0, 0, false
			}
			switch src[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(src) || hex4(src[i+2:i+6]) < 0 {
					return 0, 0, false
				}
				i += 6
			default:
				return 0, 0, false
			}
		case c < 0x20:
			return 0, 0, false
		default:
			fl |= strHigh
			i++
		}
	}
}

// hex4 decodes 4 hex digits, or returns -1.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// scanNumber scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at src[i].
func scanNumber(src []byte, i int) (end int, isInt, ok bool) {
	if src[i] == '-' {
		i++
	}
	switch {
	case i == len(src):
		return 0, false, false
	case src[i] == '0':
		i++
	case '1' <= src[i] && src[i] <= '9':
		i = digits(src, i+1)
	default:
		return 0, false, false
	}
	isInt = true
	if i < len(src) && src[i] == '.' {
		j := digits(src, i+1)
		if j == i+1 {
			return 0, false, false
		}
		i, isInt = j, false
	}
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		i++
		if i < len(src) && (src[i] == '+' || src[i] == '-') {
			i++
		}
		j := digits(src, i)
		if j == i {
			return 0, false, false
		}
		i, isInt = j, false
	}
	return i, isInt, true
}

func digits(src []byte, i int) int {
	for i < len(src) && '0' <= src[i] && src[i] <= '9' {
		i++
	}
	return i
}

// scanScalar scans a string, number or literal at src[i], returning its
// flags (strEsc and strHigh for a string, valInt for an integer).
func scanScalar(src []byte, i int) (end int, fl uint8, ok bool) {
	if i == len(src) {
		return 0, 0, false
	}
	var lit string
	switch c := src[i]; {
	case c == '"':
		return scanString(src, i)
	case c == '-' || '0' <= c && c <= '9':
		end, isInt, ok := scanNumber(src, i)
		if isInt {
			fl = valInt
		}
		return end, fl, ok
	case c == 't':
		lit = "true"
	case c == 'f':
		lit = "false"
	case c == 'n':
		lit = "null"
	default:
		return 0, 0, false
	}
	if len(src)-i < len(lit) || string(src[i:i+len(lit)]) != lit {
		return 0, 0, false
	}
	return i + len(lit), 0, true
}

// scanValue scans the value at src[i] (whitespace already skipped) inside
// a container at nesting depth depth. Besides scanScalar's flags it sets
// valSpace for a container with whitespace between its tokens.
func scanValue(src []byte, i, depth int) (end int, fl uint8, ok bool) {
	if i < len(src) && (src[i] == '{' || src[i] == '[') {
		return scanContainer(src, i, depth)
	}
	return scanScalar(src, i)
}

// scanContainer scans the object or array opening at src[i], without
// recursion: open containers are kept on a stack of bits.
func scanContainer(src []byte, i, depth int) (int, uint8, bool) {
	var st stack
	var fl uint8
	space := func(j int) int {
		k := skipSpace(src, j)
		if k != j {
			fl |= valSpace
		}
		return k
	}
	// member reads `"key" :` at src[i] and returns the index of the value.
	member := func(i int) (int, bool) {
		if i == len(src) || src[i] != '"' {
			return 0, false
		}
		end, _, ok := scanString(src, i)
		if !ok {
			return 0, false
		}
		i = space(end)
		if i == len(src) || src[i] != ':' {
			return 0, false
		}
		return space(i + 1), true
	}
	for {
		// src[i] starts a value.
		if i == len(src) {
			return 0, 0, false
		}
		var ok bool
		if c := src[i]; c == '{' || c == '[' {
			if depth+st.n+1 > maxDepth {
				return 0, 0, false
			}
			st.push(c == '{')
			if i = space(i + 1); i == len(src) {
				return 0, 0, false
			}
			if src[i] != closer(c) {
				if c == '{' {
					if i, ok = member(i); !ok {
						return 0, 0, false
					}
				}
				continue
			}
			st.pop()
			i++
		} else if i, _, ok = scanScalar(src, i); !ok {
			return 0, 0, false
		}
		// After a value: close containers until the next value starts.
		for {
			if st.n == 0 {
				return i, fl, true
			}
			if i = space(i); i == len(src) {
				return 0, 0, false
			}
			obj := st.top()
			if c := src[i]; c == ',' {
				i = space(i + 1)
				if obj {
					if i, ok = member(i); !ok {
						return 0, 0, false
					}
				}
				break
			} else if (obj && c == '}') || (!obj && c == ']') {
				st.pop()
				i++
				continue
			}
			return 0, 0, false
		}
	}
}

func closer(open byte) byte {
	if open == '{' {
		return '}'
	}
	return ']'
}

// stack holds one bit per open container (1: object, 0: array): 64 in
// place, more on the heap for a frame nested that deep.
type stack struct {
	n    int
	bits uint64
	more []uint64
}

func (s *stack) push(obj bool) {
	var b uint64
	if obj {
		b = 1
	}
	if s.n < 64 {
		s.bits = s.bits&^(1<<s.n) | b<<s.n
	} else {
		k := s.n - 64
		if k/64 == len(s.more) {
			s.more = append(s.more, 0)
		}
		w := &s.more[k/64]
		*w = *w&^(1<<(k%64)) | b<<(k%64)
	}
	s.n++
}

func (s *stack) top() bool {
	k := s.n - 1
	if k < 64 {
		return s.bits>>k&1 == 1
	}
	k -= 64
	return s.more[k/64]>>(k%64)&1 == 1
}

func (s *stack) pop() { s.n-- }

// unquote appends the text of a scanned string (between its quotes)
// unescaped, exactly as encoding/json's unquoteBytes does: escapes decoded,
// surrogate pairs joined, a lone surrogate and every byte of invalid UTF-8
// replaced by U+FFFD.
func unquote(dst, s []byte) []byte {
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			switch e := s[r+1]; e {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				rr := hex4(s[r+2:])
				r += 6
				if utf16.IsSurrogate(rr) {
					if r+6 <= len(s) && s[r] == '\\' && s[r+1] == 'u' {
						if dec := utf16.DecodeRune(rr, hex4(s[r+2:])); dec != unicode.ReplacementChar {
							r += 6
							dst = utf8.AppendRune(dst, dec)
							continue
						}
					}
					rr = unicode.ReplacementChar
				}
				dst = utf8.AppendRune(dst, rr)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, e)
			}
			r += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			dst = utf8.AppendRune(dst, rr)
		}
	}
	return dst
}
