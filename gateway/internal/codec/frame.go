package codec

import (
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/natter-chat/natter/shared/wire"
)

// ErrMalformed is returned by Scan for anything that is not exactly one JSON
// object: wire.Parse refuses the same inputs.
var ErrMalformed = errors.New("codec: not a single JSON object")

// Frame is a scanned client frame: the spans of its top-level keys and
// values. It aliases the scanned bytes, so it is valid only while they
// are; Scan resets it. The zero Frame is ready to use, and a Frame reused
// for every frame of a connection stops allocating once its slices have
// grown to the connection's frames. A Frame is not safe for concurrent use.
type Frame struct {
	src     []byte
	members []member
	scratch []byte  // unescaped keys and strings
	order   []int32 // member indexes in key order (AppendChatBody)
}

// member is one top-level "key": value of a frame, as scanned (a key
// repeated later is still here; lookups take the last).
type member struct {
	k0, k1 int // the key's text: src[k0:k1] between its quotes, or scratch[k0:k1] when keyScratch
	v0, v1 int // the value: src[v0:v1], without surrounding whitespace
	flags  uint8
}

// Member flags. The str* flags describe a string (a key, or a value of
// kind '"'); valSpace a value with whitespace inside it.
const (
	strEsc     uint8 = 1 << iota // has a backslash escape
	strHigh                      // has a byte >= 0x80
	valSpace                     // a container with whitespace between its tokens
	valInt                       // a number with neither fraction nor exponent
	keyScratch                   // the key was unescaped into scratch
)

// Buffers grown past these by one large frame are given back at the next
// Scan rather than kept for the life of the connection.
const (
	keepMembers = 256
	keepScratch = 4 << 10
)

// Scan reads frame into f. It fails with ErrMalformed for exactly the
// inputs wire.Parse refuses: anything but one JSON object (with JSON
// whitespace around it at most), nesting deeper than encoding/json allows
// included. A key given twice keeps its last value, as in wire.Object. On
// error f holds no keys.
func Scan(frame []byte, f *Frame) error {
	f.reset(frame)
	if err := f.scan(); err != nil {
		f.members = f.members[:0]
		return err
	}
	return nil
}

func (f *Frame) reset(src []byte) {
	f.src = src
	if cap(f.members) > keepMembers {
		f.members = nil
	}
	if cap(f.scratch) > keepScratch {
		f.scratch = nil
	}
	if cap(f.order) > keepMembers {
		f.order = nil
	}
	f.members, f.scratch, f.order = f.members[:0], f.scratch[:0], f.order[:0]
}

func (f *Frame) scan() error {
	src := f.src
	i := skipSpace(src, 0)
	if i == len(src) || src[i] != '{' {
		return ErrMalformed
	}
	i = skipSpace(src, i+1)
	if i < len(src) && src[i] == '}' {
		i++
	} else {
		for {
			if i == len(src) || src[i] != '"' {
				return ErrMalformed
			}
			kend, kfl, ok := scanString(src, i)
			if !ok {
				return ErrMalformed
			}
			m := member{k0: i + 1, k1: kend - 1}
			i = skipSpace(src, kend)
			if i == len(src) || src[i] != ':' {
				return ErrMalformed
			}
			i = skipSpace(src, i+1)
			vend, vfl, ok := scanValue(src, i, 1)
			if !ok {
				return ErrMalformed
			}
			m.v0, m.v1, m.flags = i, vend, vfl
			if kfl&strEsc != 0 || (kfl&strHigh != 0 && !utf8.Valid(src[m.k0:m.k1])) {
				// Compare keys as encoding/json stores them: unescaped,
				// invalid UTF-8 replaced.
				s0 := len(f.scratch)
				f.scratch = unquote(f.scratch, src[m.k0:m.k1])
				m.k0, m.k1 = s0, len(f.scratch)
				m.flags |= keyScratch
			}
			f.members = append(f.members, m)
			i = skipSpace(src, vend)
			if i == len(src) {
				return ErrMalformed
			}
			if src[i] == '}' {
				i++
				break
			}
			if src[i] != ',' {
				return ErrMalformed
			}
			i = skipSpace(src, i+1)
		}
	}
	if skipSpace(src, i) != len(src) {
		return ErrMalformed
	}
	return nil
}

// key is member m's key, unescaped.
func (f *Frame) key(m *member) []byte {
	if m.flags&keyScratch != 0 {
		return f.scratch[m.k0:m.k1]
	}
	return f.src[m.k0:m.k1]
}

// find returns the member holding key's value (the last one given), or nil.
func (f *Frame) find(key string) *member {
	for i := len(f.members) - 1; i >= 0; i-- {
		m := &f.members[i]
		if k := f.key(m); len(k) == len(key) && string(k) == key {
			return m
		}
	}
	return nil
}

func (f *Frame) value(m *member) []byte { return f.src[m.v0:m.v1] }

func isNull(v []byte) bool { return string(v) == "null" }

// Raw is key's value as it was sent (without surrounding whitespace), or
// nil when key is absent: wire.Object's o[key]. It aliases the frame.
func (f *Frame) Raw(key string) []byte {
	if m := f.find(key); m != nil {
		return f.value(m)
	}
	return nil
}

// Has reports whether key is present and not null.
func (f *Frame) Has(key string) bool { return f.present(f.find(key)) }

// present reports whether member m is there and not null.
func (f *Frame) present(m *member) bool { return m != nil && !isNull(f.value(m)) }

// Int reads a required integer field: a JSON number without fraction or
// exponent that fits an int64 ("1.5", "1e2", "\"7\"" are refused).
func (f *Frame) Int(key string) (int64, error) { return f.intAt(f.find(key), key) }

// intAt is Int of member m (nil when absent), named key.
func (f *Frame) intAt(m *member, key string) (int64, error) {
	if m == nil || isNull(f.value(m)) {
		return 0, &wire.FieldError{Field: key, Reason: "is missing"}
	}
	if m.flags&valInt != 0 {
		if n, ok := parseInt(f.value(m)); ok {
			return n, nil
		}
	}
	return 0, &wire.FieldError{Field: key, Reason: "must be an integer"}
}

// OptInt reads an optional integer field; ok is false when it is absent or
// null.
func (f *Frame) OptInt(key string) (n int64, ok bool, err error) {
	if !f.Has(key) {
		return 0, false, nil
	}
	n, err = f.Int(key)
	return n, err == nil, err
}

// StringBytes reads a required string field, unescaped (invalid UTF-8
// replaced by U+FFFD, as encoding/json does). The bytes alias the frame or
// f's scratch space: they are valid until the next Scan and must not be
// modified. It allocates nothing in steady state.
func (f *Frame) StringBytes(key string) ([]byte, error) { return f.stringAt(f.find(key), key) }

// stringAt is StringBytes of member m (nil when absent), named key.
func (f *Frame) stringAt(m *member, key string) ([]byte, error) {
	if m == nil || isNull(f.value(m)) {
		return nil, &wire.FieldError{Field: key, Reason: "is missing"}
	}
	v := f.value(m)
	if v[0] != '"' {
		return nil, &wire.FieldError{Field: key, Reason: "must be a string"}
	}
	text := v[1 : len(v)-1]
	if m.flags&strEsc == 0 && (m.flags&strHigh == 0 || utf8.Valid(text)) {
		return text[:len(text):len(text)], nil
	}
	s0 := len(f.scratch)
	f.scratch = unquote(f.scratch, text)
	return f.scratch[s0:len(f.scratch):len(f.scratch)], nil
}

// String reads a required string field (see StringBytes).
func (f *Frame) String(key string) (string, error) {
	b, err := f.StringBytes(key)
	return string(b), err
}

// OptString reads an optional string field; ok is false when it is absent
// or null.
func (f *Frame) OptString(key string) (s string, ok bool, err error) {
	if !f.Has(key) {
		return "", false, nil
	}
	s, err = f.String(key)
	return s, err == nil, err
}

// Object copies the frame into a wire.Object, for code that still works
// on one. It allocates; the hot paths use the accessors.
func (f *Frame) Object() wire.Object {
	o := make(wire.Object, len(f.members))
	for i := range f.members {
		m := &f.members[i]
		o[string(f.key(m))] = json.RawMessage(append([]byte(nil), f.value(m)...))
	}
	return o
}

// parseInt parses a JSON integer token (-?digits, without leading zeros as
// the scanner checked) into an int64; ok is false when it does not fit.
func parseInt(b []byte) (int64, bool) {
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) > 19 { // 20 digits without a leading zero are >= 1e19 > 1<<63
		return 0, false
	}
	var u uint64
	for _, c := range b {
		u = u*10 + uint64(c-'0')
	}
	switch {
	case neg && u <= 1<<63:
		return -int64(u), true // 1<<63 wraps to math.MinInt64, as it should
	case !neg && u < 1<<63:
		return int64(u), true
	}
	return 0, false
}
