package loadgen

import (
	"math"

	"github.com/natter-chat/natter/shared/wire"
)

// pushFrame is a chat push (ONE_CHAT or GROUP_CHAT) with the fields the load
// generator checks. scanPush fills it without allocating: Mid and Run alias
// the frame's bytes and are valid only during the push callback.
type pushFrame struct {
	MsgID   wire.MsgID
	ID      int64 // the sender
	GroupID int64
	Seq     int64
	Mid     []byte
	Bench   bool // the frame has a bench object
	Run     []byte
	N, T    int64
	Gen     int64 // the connection it came on (set by conn, not read from the frame)
}

func isPush(id wire.MsgID) bool { return id == wire.OneChat || id == wire.GroupChat }

// fromFrame fills p from a frame decoded by encoding/json (the fallback for
// what scanPush does not read).
func (p *pushFrame) fromFrame(f *frame) {
	*p = pushFrame{MsgID: f.MsgID, ID: f.ID, GroupID: f.GroupID, Seq: f.Seq, Mid: []byte(f.Mid)}
	if b := f.Bench; b != nil {
		p.Bench, p.Run, p.N, p.T = true, []byte(b.Run), b.N, b.T
	}
}

// scanPush reads the push fields of b, one JSON object, into p, without
// allocating: with 2,000 member connections in one process every delivery
// goes through here. It reads integers without fraction or exponent and
// printable ASCII strings without escapes in the keys and the fields it
// keeps, matches keys exactly as the server spells them (encoding/json would
// also take "Seq"), skips every other value, and reports false for anything
// else (the caller then falls back to encoding/json). It checks the syntax only as far as it reads it;
// the server's frames are well-formed.
func scanPush(b []byte, p *pushFrame) bool {
	*p = pushFrame{}
	s := scanner{b: b}
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "msgid":
			var v int64
			v, ok = s.int()
			p.MsgID = wire.MsgID(v)
		case "id":
			p.ID, ok = s.int()
		case "groupid":
			p.GroupID, ok = s.int()
		case "seq":
			p.Seq, ok = s.int()
		case "mid":
			p.Mid, ok = s.plainString()
		case "bench":
			p.Bench = true
			ok = s.object(func(key []byte) bool {
				var ok bool
				switch string(key) {
				case "run":
					p.Run, ok = s.plainString()
				case "n":
					p.N, ok = s.int()
				case "t":
					p.T, ok = s.int()
				default:
					ok = s.skip()
				}
				return ok
			})
		default:
			ok = s.skip()
		}
		return ok
	})
	s.space()
	return ok && s.i == len(s.b)
}

// scanner is a cursor over one JSON text.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next skips white space and consumes c if it comes next.
func (s *scanner) next(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// object reads an object, calling member with each key (whose value comes
// next) until it returns false.
func (s *scanner) object(member func(key []byte) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	for {
		s.space()
		key, ok := s.plainString()
		if !ok || !s.next(':') {
			return false
		}
		s.space()
		if !member(key) {
			return false
		}
		if s.next(',') {
			continue
		}
		return s.next('}')
	}
}

// str reads a string and returns its raw bytes between the quotes and
// whether they contain an escape.
func (s *scanner) str() (raw []byte, escaped, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false, false
	}
	start := s.i + 1
	for i := start; i < len(s.b); i++ {
		switch s.b[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			s.i = i + 1
			return s.b[start:i], escaped, true
		}
	}
	return nil, false, false
}

// plainString reads a string of printable ASCII without escapes (what
// encoding/json would read as the same bytes).
func (s *scanner) plainString() ([]byte, bool) {
	raw, escaped, ok := s.str()
	if !ok || escaped {
		return nil, false
	}
	for _, c := range raw {
		if c < 0x20 || c >= 0x80 {
			return nil, false
		}
	}
	return raw, true
}

// int reads an integer that fits an int64, without fraction or exponent.
func (s *scanner) int() (int64, bool) {
	i, neg := s.i, false
	if i < len(s.b) && s.b[i] == '-' {
		neg, i = true, i+1
	}
	const cutoff = math.MaxInt64 / 10
	var v int64
	digits := 0
	for ; i < len(s.b) && s.b[i] >= '0' && s.b[i] <= '9'; i++ {
		d := int64(s.b[i] - '0')
		if v > cutoff || v == cutoff && d > math.MaxInt64%10 {
			return 0, false // out of range (or math.MinInt64): let encoding/json judge
		}
		v = v*10 + d
		digits++
	}
	if digits == 0 || i < len(s.b) && (s.b[i] == '.' || s.b[i] == 'e' || s.b[i] == 'E') {
		return 0, false
	}
	s.i = i
	if neg {
		return -v, true
	}
	return v, true
}

// skip reads any value.
func (s *scanner) skip() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == '{' || c == '[':
		return s.skipNested()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		start := s.i
		for s.i < len(s.b) && isNumberByte(s.b[s.i]) {
			s.i++
		}
		return s.i > start
	}
	return false
}

// skipNested skips an object or array, whatever it holds.
func (s *scanner) skipNested() bool {
	depth := 0
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			if _, _, ok := s.str(); !ok {
				return false
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				s.i++
				return true
			}
		}
		s.i++
	}
	return false
}

func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}
