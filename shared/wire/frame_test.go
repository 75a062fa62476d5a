package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type got struct {
	frame string
	term  byte
}

func decodeAll(t *testing.T, r io.Reader, max int) ([]got, error) {
	t.Helper()
	d := NewDecoder(r, max)
	var out []got
	for {
		f, term, err := d.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, got{string(f), term})
	}
}

func TestDecoder(t *testing.T) {
	big := strings.Repeat("x", 3000)
	tests := []struct {
		name string
		in   string
		max  int
		want []got
		err  error
	}{
		{"newline", "{\"a\":1}\n{\"b\":2}\n", 0, []got{{`{"a":1}`, '\n'}, {`{"b":2}`, '\n'}}, nil},
		{"nul", "{\"a\":1}\x00{\"b\":2}\x00", 0, []got{{`{"a":1}`, 0}, {`{"b":2}`, 0}}, nil},
		{"mixed", "{\"a\":1}\x00{\"b\":2}\n", 0, []got{{`{"a":1}`, 0}, {`{"b":2}`, '\n'}}, nil},
		{"crlf", "{\"a\":1}\r\n", 0, []got{{`{"a":1}`, '\n'}}, nil},
		{"blank lines skipped", "\n\r\n  \n{}\n\x00", 0, []got{{`{}`, '\n'}}, nil},
		{"unterminated tail", "{\"a\":1}\n{\"b\"", 0, []got{{`{"a":1}`, '\n'}, {`{"b"`, '\n'}}, nil},
		{"large but allowed", big + "\n", 4096, []got{{big, '\n'}}, nil},
		{"exactly max", strings.Repeat("y", 1024) + "\n", 1024, []got{{strings.Repeat("y", 1024), '\n'}}, nil},
		{"over max terminated", strings.Repeat("y", 1025) + "\n", 1024, nil, ErrFrameTooLarge},
		{"over max unterminated", strings.Repeat("y", 5000), 1024, nil, ErrFrameTooLarge},
		{"utf8", "{\"msg\":\"你好 😀\"}\n", 0, []got{{`{"msg":"你好 😀"}`, '\n'}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, rd := range []struct {
				name string
				r    io.Reader
			}{
				{"whole", strings.NewReader(tt.in)},
				{"byte by byte", iotest.OneByteReader(strings.NewReader(tt.in))},
				{"half", iotest.HalfReader(strings.NewReader(tt.in))},
			} {
				out, err := decodeAll(t, rd.r, tt.max)
				if !errors.Is(err, tt.err) {
					t.Fatalf("%s: err = %v, want %v", rd.name, err, tt.err)
				}
				if tt.err == nil && !equal(out, tt.want) {
					t.Fatalf("%s: frames = %q, want %q", rd.name, out, tt.want)
				}
			}
		})
	}
}

func equal(a, b []got) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestObjectFields(t *testing.T) {
	o, err := Parse([]byte(`{"msgid":6,"toid":"7","msg":12,"f":1.5,"n":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := o.Int("msgid"); err != nil || v != 6 {
		t.Fatalf("msgid = %v, %v", v, err)
	}
	var fe *FieldError
	if _, err := o.Int("toid"); !errors.As(err, &fe) || fe.Reason != "must be an integer" {
		t.Fatalf("toid err = %v", err)
	}
	if _, err := o.Int("f"); err == nil {
		t.Fatal("1.5 accepted as an integer")
	}
	if _, err := o.String("msg"); !errors.As(err, &fe) || fe.Reason != "must be a string" {
		t.Fatalf("msg err = %v", err)
	}
	if _, err := o.String("missing"); !errors.As(err, &fe) || fe.Reason != "is missing" {
		t.Fatalf("missing err = %v", err)
	}
	if _, ok, err := o.OptInt("n"); ok || err != nil {
		t.Fatalf("null optional: ok=%v err=%v", ok, err)
	}
	for _, bad := range []string{`[]`, `null`, `"x"`, `{`, `{"a":1} {"b":2}`} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%s) accepted", bad)
		}
	}
}

func TestEncodeSortedNoHTMLEscape(t *testing.T) {
	o, _ := Parse([]byte(`{"z":1,"a":"<b>&"}`))
	o.SetString("m", "你好")
	if got, want := string(o.Encode()), `{"a":"<b>&","m":"你好","z":1}`; got != want {
		t.Fatalf("Encode = %s, want %s", got, want)
	}
}

// FuzzDecoder checks that no input makes the decoder panic, return a frame
// containing a terminator, or exceed its limit, and that splitting the input
// into reads of any size gives the same frames.
func FuzzDecoder(f *testing.F) {
	for _, s := range []string{"{\"msgid\":1}\n", "{}\x00{}\x00", "\r\n\n", "{\"a\":\"\\u0000\"}\n", strings.Repeat("a", 300)} {
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		const max = 256
		whole, errWhole := decodeAll(t, bytes.NewReader(in), max)
		split, errSplit := decodeAll(t, &chunked{in, int(chunk%32) + 1}, max)
		if (errWhole == nil) != (errSplit == nil) || !equal(whole, split) {
			t.Fatalf("whole %q (%v) != split %q (%v)", whole, errWhole, split, errSplit)
		}
		for _, g := range whole {
			if len(g.frame) > max || strings.ContainsAny(g.frame, "\x00\n") || len(strings.TrimSpace(g.frame)) == 0 {
				t.Fatalf("bad frame %q", g.frame)
			}
		}
		if errWhole != nil && !errors.Is(errWhole, ErrFrameTooLarge) {
			t.Fatalf("unexpected error %v", errWhole)
		}
	})
}

type chunked struct {
	b []byte
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), c.n, len(c.b))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

func BenchmarkDecode(b *testing.B) {
	frame := []byte(`{"msgid":6,"id":1,"name":"alice","toid":2,"msg":"hello there, how are you today?","time":"2026-11-21 12:00:00"}` + "\n")
	in := bytes.Repeat(frame, 1000)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		d := NewDecoder(bytes.NewReader(in), 0)
		for {
			if _, _, err := d.Next(); err != nil {
				break
			}
		}
	}
}

func BenchmarkEncodePush(b *testing.B) {
	body := []byte(`{"msgid":6,"id":1,"name":"alice","toid":2,"msg":"hello there, how are you today?","time":"2026-11-21 12:00:00"}`)
	for b.Loop() {
		o, _ := Parse(body)
		o.SetString("mid", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
		o.SetInt("seq", 12345)
		_ = o.Encode()
	}
}
