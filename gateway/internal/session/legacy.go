package session

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/wire"
)

// The original C++ client reads with ONE recv(fd, buf, 1024) per frame and
// parses the buffer as a C string: it stops at the first NUL and throws the
// rest of that read away. Two frames in one read lose the second; a read
// that ends inside a frame makes the next one start in the middle of a
// frame, which aborts the client. The rule natter follows for a legacy
// session on TCP (docs/protocol.md, "The original client"):
//
//  1. Every frame fits the buffer (at most legacyMaxFrame bytes before its
//     NUL): LOGIN_ACK lists are cut to fit, a long chat text is cut with a
//     marker (fitChat).
//  2. Every frame goes out as one record of exactly legacyRecord bytes: the
//     frame, its NUL, then NUL filler. recv(1024) on a stream of whole
//     records returns exactly one record whenever one is buffered, so
//     records that pile up while the client is busy (a paused process, a
//     slow terminal) are read one per recv later, none lost; the filler is
//     after the NUL, which the client never looks past.
//  3. Records are paced: the next is written once the peer's TCP has
//     acknowledged the previous one (TCP_INFO: nothing unacknowledged or
//     unsent) and, while the peer's advertised window is small, not at all:
//     each record travels as a segment of its own and is never cut by a
//     closing window.
//  4. A record counts as delivered only once the client has read it, and
//     the gateway learns that only when the connection ends: a TCP socket
//     closed with unread data answers with a reset, so a clean end of
//     stream (FIN) with every byte acknowledged means every record was read.
//     Acks for a legacy session are therefore handed to the inbox when its
//     connection ends cleanly (the gateway half-closes and waits for the
//     client's end when it is the one closing); after a reset, a crash or a
//     gateway failure nothing unconfirmed is acknowledged and the next login
//     delivers it again: the worst case is a duplicate, never a loss.
const (
	legacyRecord   = 1024
	legacyMaxFrame = legacyRecord - 1
	// legacyMinWindow: below this many bytes of advertised window the
	// client is not reading; records wait rather than be cut by the window.
	legacyMinWindow = 8 * legacyRecord
	// legacyCloseWait bounds the wait for the client's own close after the
	// gateway half-closed a legacy connection.
	legacyCloseWait = 3 * time.Second
)

// appendRecord appends frame (without terminator) as one legacy record.
func appendRecord(dst, frame []byte) []byte {
	dst = append(dst, frame...)
	for len(dst)%legacyRecord != 0 || len(dst) == 0 {
		dst = append(dst, 0)
	}
	return dst
}

// cutMarker ends a chat text that was cut to fit the original client.
const cutMarker = " [... cut: too long for this client; a full-dialect client shows it all]"

// fitChat encodes a chat body for the original client. A body whose frame
// would not fit legacyMaxFrame bytes gets its "msg" cut at a character
// boundary and cutMarker appended; if even that cannot fit (long extra
// fields), only the original's fields are kept.
func fitChat(o wire.Object) []byte {
	enc := o.Encode()
	if len(enc) <= legacyMaxFrame {
		return enc
	}
	msg, err := o.String("msg")
	if err != nil {
		msg = ""
	}
	fit := func(o wire.Object) []byte {
		o.Set("msg", cutMarker)
		base := len(o.Encode()) // the frame with only the marker as text
		room := legacyMaxFrame - base
		if room < 0 {
			return nil
		}
		// Each byte of text costs at most 6 bytes encoded (\u00XX); cut
		// generously, then shrink until it fits.
		n := min(len(msg), room)
		for n >= 0 {
			for n > 0 && !utf8.RuneStart(msg[n]) && n < len(msg) {
				n--
			}
			o.Set("msg", msg[:n]+cutMarker)
			if enc := o.Encode(); len(enc) <= legacyMaxFrame {
				return enc
			}
			n -= max(1, (len(o.Encode())-legacyMaxFrame)/6)
		}
		return nil
	}
	if enc := fit(o); enc != nil {
		return enc
	}
	slim := wire.Object{}
	for _, k := range []string{"msgid", "id", "name", "toid", "groupid", "time"} {
		if v, ok := o[k]; ok && len(v) < 128 {
			slim[k] = v
		}
	}
	if enc := fit(slim); enc != nil {
		return enc
	}
	slim = wire.Object{"msgid": o["msgid"]}
	slim.Set("msg", cutMarker)
	return slim.Encode()
}

// legacyLoginAck builds the original LOGIN_ACK within legacyMaxFrame bytes:
// the friends that fit, then the groups (each with the members that fit),
// then the offline messages that fit (in seq order, none after one that
// does not). Lists are left out when empty, elements are JSON-encoded
// strings, as the original client parses them. It returns the frame and the
// offline messages it carries.
func legacyLoginAck(uid int64, name string, friends []api.Profile, groups []api.Group, msgs []api.InboxMessage) ([]byte, []api.InboxMessage) {
	ack := map[string]any{"msgid": wire.LoginAck, "errno": wire.OK, "id": uid, "name": name}
	fits := func() bool { return len(wire.Marshal(ack)) <= legacyMaxFrame }
	var fs []string
	for _, f := range friendObjects(friends) {
		fs = append(fs, string(wire.Marshal(f)))
		ack["friends"] = fs
		if !fits() {
			fs = fs[:len(fs)-1]
			break
		}
	}
	if len(fs) == 0 {
		delete(ack, "friends")
	} else {
		ack["friends"] = fs
	}
	var gs []string
	for _, g := range groups {
		obj := groupObject(g)
		users := legacyStrings(obj["users"].([]map[string]any))
		placed := false
		// A member costs at least 40 bytes: no more than 25 can fit.
		for n := min(len(users), 25); n >= 0 && !placed; n-- {
			obj["users"] = users[:n]
			ack["groups"] = append(gs, string(wire.Marshal(obj)))
			placed = fits()
		}
		if !placed {
			break
		}
		gs = append(gs, string(wire.Marshal(obj)))
	}
	if len(gs) == 0 {
		delete(ack, "groups")
	} else {
		ack["groups"] = gs
	}
	var offline []string
	n := 0
	for _, m := range msgs {
		ack["offlinemsg"] = append(offline, string(m.Body))
		if !fits() {
			break
		}
		offline = append(offline, string(m.Body))
		n++
	}
	if len(offline) == 0 {
		delete(ack, "offlinemsg")
	} else {
		ack["offlinemsg"] = offline
	}
	return wire.Marshal(ack), msgs[:n]
}

// legacyNotice is a frame the original client shows as it shows a chat:
// "<time> [0]natter said: <text>". It knows no other frame it would print
// on its own.
func legacyNotice(text string) []byte {
	o := wire.Object{}
	o.Set("msgid", wire.OneChat)
	o.Set("id", 0)
	o.Set("name", "natter")
	o.Set("msg", text)
	o.Set("time", time.Now().Format(time.DateTime))
	return o.Encode()
}

// tcpState is what TCP_INFO says about the bytes written to a connection.
type tcpState struct {
	pending int    // bytes not yet acknowledged by the peer (sent or not)
	window  uint32 // the peer's advertised receive window
}

// readTCPState reads TCP_INFO of c; ok is false when c is not a TCP socket
// or the call fails.
func readTCPState(c *net.TCPConn) (st tcpState, ok bool) {
	if c == nil {
		return st, false
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return st, false
	}
	var ti *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		ti, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return st, false
	}
	// Unacked counts segments; any unacknowledged or unsent byte means
	// the last record is not with the peer yet.
	st.pending = int(ti.Unacked) + int(ti.Notsent_bytes)
	st.window = ti.Snd_wnd
	return st, true
}

// legacyPacer decides when the next record of a legacy TCP session may be
// written (rule 3 above).
type legacyPacer struct {
	conn *net.TCPConn
	gap  time.Duration // at least this long between records
}

// wait blocks until the record written at written has reached the peer and
// the peer's window has room, or until deadline or done. It reports
// whether the record was acknowledged by the peer's TCP.
func (p legacyPacer) wait(written, deadline time.Time, done <-chan struct{}) (acked bool, err error) {
	poll := 50 * time.Microsecond
	for {
		st, ok := readTCPState(p.conn)
		if !ok {
			return false, nil // not TCP: nothing to learn
		}
		if st.pending == 0 && st.window >= legacyMinWindow {
			if d := time.Until(written.Add(p.gap)); d > 0 {
				if !sleepOr(d, done) {
					return true, net.ErrClosed
				}
			}
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, errLegacyStalled
		}
		if !sleepOr(poll, done) {
			return false, net.ErrClosed
		}
		poll = min(2*poll, 20*time.Millisecond)
	}
}

var errLegacyStalled = errors.New("the client stopped reading")

func sleepOr(d time.Duration, done <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

// legacyAcks remembers, per user, the highest seq written to a legacy
// connection (written) and the highest the peer's TCP has acknowledged
// (reached): the candidates for acknowledgement once the connection ends.
type legacyAcks struct {
	written map[int64]int64
	reached map[int64]int64
}

func (l *legacyAcks) wrote(uid, seq int64) {
	if l.written == nil {
		l.written = map[int64]int64{}
	}
	l.written[uid] = max(l.written[uid], seq)
}

func (l *legacyAcks) peerHas(uid, seq int64) {
	if l.reached == nil {
		l.reached = map[int64]int64{}
	}
	l.reached[uid] = max(l.reached[uid], seq)
}

// confirmed is what the client has read, given how its connection ended:
// end is the first read error (io.EOF for a FIN) and st the TCP state at
// that moment. A reset or any other end confirms nothing.
func (l *legacyAcks) confirmed(end error, st tcpState, stOK bool) map[int64]int64 {
	if !errors.Is(end, io.EOF) || errors.Is(end, syscall.ECONNRESET) {
		return nil
	}
	if stOK && st.pending == 0 {
		return l.written
	}
	return l.reached
}
