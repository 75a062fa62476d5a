// Package wire is natter's client protocol: JSON objects over TCP, each frame
// ended by '\n' (the full dialect, netcat) or '\0' (the legacy dialect of the
// original C++ client). It holds the frame decoder, the message ids, the
// error numbers and the helpers that read typed fields out of a frame.
package wire

import (
	"bytes"
	"errors"
	"io"
)

// Frame terminators.
const (
	TermNewline byte = '\n'
	TermNUL     byte = 0
)

// DefaultMaxFrame is the largest frame accepted unless configured otherwise.
const DefaultMaxFrame = 64 << 10

// ErrFrameTooLarge is returned by Decoder.Next when a frame exceeds the limit.
// The stream cannot be resynchronized after it: close the connection.
var ErrFrameTooLarge = errors.New("frame too large")

const minBuf = 512

// Decoder splits a byte stream into frames. It is not safe for concurrent
// use.
type Decoder struct {
	r          io.Reader
	buf        []byte
	start, end int
	max        int
	eof        bool
}

// NewDecoder returns a Decoder reading from r that rejects frames longer than
// max bytes (DefaultMaxFrame if max <= 0).
func NewDecoder(r io.Reader, max int) *Decoder {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	return &Decoder{r: r, max: max}
}

// Next returns the next non-blank frame without its terminator (a '\r' before
// '\n' is dropped too, for telnet) and the terminator that ended it. The
// frame aliases the decoder's buffer and is valid until the next call. Bytes
// left at end of stream without a terminator form a last frame ended by
// '\n'. At end of stream Next returns io.EOF.
func (d *Decoder) Next() (frame []byte, term byte, err error) {
	for {
		if i := indexTerm(d.buf[d.start:d.end]); i >= 0 {
			frame = d.buf[d.start : d.start+i]
			term = d.buf[d.start+i]
			d.start += i + 1
			if len(frame) > d.max {
				return nil, term, ErrFrameTooLarge
			}
			if term == TermNewline && len(frame) > 0 && frame[len(frame)-1] == '\r' {
				frame = frame[:len(frame)-1]
			}
			if isBlank(frame) {
				continue
			}
			return frame, term, nil
		}
		if d.end-d.start > d.max {
			return nil, 0, ErrFrameTooLarge
		}
		if d.eof {
			rest := d.buf[d.start:d.end]
			d.start = d.end
			if isBlank(rest) {
				return nil, 0, io.EOF
			}
			return rest, TermNewline, nil
		}
		d.fill()
	}
}

// fill reads more input, compacting or growing the buffer as needed.
func (d *Decoder) fill() {
	if d.start == d.end {
		d.start, d.end = 0, 0
		// Give back a buffer grown by one large frame.
		if len(d.buf) > 4*minBuf {
			d.buf = nil
		}
	}
	if d.buf == nil {
		d.buf = make([]byte, minBuf)
	}
	if d.start > 0 && d.end == len(d.buf) {
		n := copy(d.buf, d.buf[d.start:d.end])
		d.start, d.end = 0, n
	}
	if d.end == len(d.buf) {
		size := 2 * len(d.buf)
		if size > d.max+1 {
			size = d.max + 1
		}
		if size <= len(d.buf) {
			size = len(d.buf) + 1
		}
		nb := make([]byte, size)
		copy(nb, d.buf[d.start:d.end])
		d.buf, d.end, d.start = nb, d.end-d.start, 0
	}
	n, err := d.r.Read(d.buf[d.end:])
	d.end += n
	if err != nil {
		d.eof = true
	}
}

func indexTerm(b []byte) int {
	for i, c := range b {
		if c == TermNewline || c == TermNUL {
			return i
		}
	}
	return -1
}

func isBlank(b []byte) bool {
	return len(bytes.TrimSpace(b)) == 0
}
