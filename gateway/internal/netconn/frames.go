package netconn

import (
	"bytes"

	"github.com/natter-chat/natter/shared/wire"
)

// splitFrames hands each complete frame in buf to fn, with shared/wire's
// rules: a frame ends with '\n' or NUL, a '\r' before '\n' is dropped,
// blank frames are skipped. It returns how many bytes it consumed (the
// rest is the start of a frame still arriving) and ErrFrameTooLarge when a
// frame, complete or not, is longer than max. fn returns false to stop.
func splitFrames(buf []byte, max int, fn func(frame []byte, term byte) bool) (int, error) {
	used := 0
	for {
		rest := buf[used:]
		i := indexTerm(rest)
		if i < 0 {
			if len(rest) > max {
				return used, ErrFrameTooLarge
			}
			return used, nil
		}
		frame, term := rest[:i], rest[i]
		used += i + 1
		if len(frame) > max {
			return used, ErrFrameTooLarge
		}
		if term == wire.TermNewline && len(frame) > 0 && frame[len(frame)-1] == '\r' {
			frame = frame[:len(frame)-1]
		}
		if isBlank(frame) {
			continue
		}
		if !fn(frame, term) {
			return used, nil
		}
	}
}

func indexTerm(b []byte) int {
	for i, ch := range b {
		if ch == wire.TermNewline || ch == wire.TermNUL {
			return i
		}
	}
	return -1
}

func isBlank(b []byte) bool { return len(bytes.TrimSpace(b)) == 0 }

// tailFrame is what is left in buf at the end of the stream: bytes without
// a terminator form a last frame ended by '\n' (wire.Decoder's rule), so
// `printf '{"msgid":11}' | nc` gets its answer.
func tailFrame(buf []byte, max int) (frame []byte, ok bool) {
	if isBlank(buf) || len(buf) > max {
		return nil, false
	}
	return buf, true
}
