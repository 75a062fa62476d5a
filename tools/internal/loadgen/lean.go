package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/natter-chat/natter/shared/wire"
)

// scratchSize is the initial read buffer of a worker; server frames of
// the connection workloads (acks, pongs) are far smaller.
const scratchSize = 4 << 10

// leanConn is a full-dialect connection without a goroutine of its own, for
// the connection workloads (idle, login-storm, resume-storm), which hold up
// to 100,000 of them in one process: whoever holds it writes a request and
// reads frames until the reply, into the caller's scratch buffer. A
// connection at rest is its socket and a few words. Frames that answer no
// request (a late reply to a request that timed out, a push) are skipped.
// It is used by one goroutine at a time.
type leanConn struct {
	nc     net.Conn
	rest   []byte // bytes read after the last frame (rare: the server sent two frames at once)
	nextID int64
	dead   bool // the connection broke: nothing more is sent on it
}

// scratch is a worker's buffers, reused for every connection it serves.
type scratch struct {
	in  []byte
	out []byte
}

func newScratch() *scratch { return &scratch{in: make([]byte, 0, scratchSize)} }

// dialLean connects to addr.
func dialLean(ctx context.Context, d *dialer, addr string) (*leanConn, error) {
	nc, err := d.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return &leanConn{nc: nc}, nil
}

// reset closes the connection abruptly: a TCP reset instead of the orderly
// close, as when the peer's machine dies - and this side keeps no port in
// TIME_WAIT, so 100,000 connections can close and come back at once.
func (c *leanConn) reset() {
	nc := c.nc
	if t, ok := nc.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.nc.Close()
	c.dead = true
}

// call sends the frame build returns for a fresh reqid and reads frames
// until its reply; a reply with errno != 0 is returned as a *ReplyError
// along with the frame. ctx bounds the whole exchange.
func (c *leanConn) call(ctx context.Context, s *scratch, build func(reqid int64) any) (*frame, error) {
	if c.dead {
		return nil, errClosed
	}
	c.nextID++
	id := c.nextID
	b, err := json.Marshal(build(id))
	if err != nil {
		return nil, fmt.Errorf("encode frame: %w", err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(setupRequestTimeout)
	}
	c.nc.SetDeadline(deadline)
	defer c.nc.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	s.out = append(append(s.out[:0], b...), wire.TermNewline)
	if _, err := c.nc.Write(s.out); err != nil {
		c.broke()
		return nil, fmt.Errorf("write: %w", err)
	}
	f, err := c.reply(s, id)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
	}
	return f, err
}

// sendPing writes a PING with the next reqid and returns the reqid.
func (c *leanConn) sendPing(s *scratch, deadline time.Time) (int64, error) {
	c.nextID++
	s.out = append(s.out[:0], `{"msgid":11,"reqid":`...)
	s.out = strconv.AppendInt(s.out, c.nextID, 10)
	s.out = append(s.out, '}', wire.TermNewline)
	c.nc.SetWriteDeadline(deadline)
	if _, err := c.nc.Write(s.out); err != nil {
		c.broke()
		return 0, fmt.Errorf("write ping: %w", err)
	}
	return c.nextID, nil
}

// reply reads frames until the answer to request id: the frame with its
// reqid, or an error frame without any (errno 109: dropped unread, or the
// gateway stopping). The connection's deadline bounds it.
func (c *leanConn) reply(s *scratch, id int64) (*frame, error) {
	for {
		b, err := c.readFrame(s)
		if err != nil {
			if !errors.Is(err, errTimeout) {
				c.broke()
			}
			return nil, err
		}
		var f frame
		if err := json.Unmarshal(b, &f); err != nil {
			c.broke()
			return nil, fmt.Errorf("read: bad frame from server: %w", err)
		}
		switch {
		case f.MsgID == wire.Kicked:
			c.broke()
			return nil, errors.New("kicked: the user logged in elsewhere")
		case f.ReqID == id, f.ReqID == 0 && f.Errno != 0:
			if f.Errno != 0 {
				return &f, &ReplyError{Errno: f.Errno, Errmsg: f.Errmsg}
			}
			return &f, nil
		}
		// A late answer to an earlier request, or a push: not ours.
	}
}

func (c *leanConn) broke() {
	c.dead = true
	c.nc.Close()
}

// errTimeout wraps a read that ran into the connection's deadline (the
// connection stays usable: a late reply is skipped by the next read).
var errTimeout = errors.New("no reply in time")

// readFrame returns the next non-blank frame, without its terminator, read
// into s.in; it is valid until s is used again. Bytes after the frame are
// kept for the next call.
func (c *leanConn) readFrame(s *scratch) ([]byte, error) {
	b := append(s.in[:0], c.rest...)
	c.rest = c.rest[:0]
	scanned := 0
	for {
		if i := bytes.IndexAny(b[scanned:], "\n\x00"); i >= 0 {
			end := scanned + i
			f := bytes.TrimRight(b[:end], "\r")
			if len(b) > end+1 {
				c.rest = append(c.rest, b[end+1:]...)
			}
			s.in = b
			if len(bytes.TrimSpace(f)) == 0 {
				b = append(b[:0], c.rest...)
				c.rest = c.rest[:0]
				scanned = 0
				continue
			}
			return f, nil
		}
		scanned = len(b)
		if len(b) > maxInFrame {
			return nil, fmt.Errorf("read: %w", wire.ErrFrameTooLarge)
		}
		if len(b) == cap(b) {
			nb := make([]byte, len(b), max(2*cap(b), scratchSize))
			copy(nb, b)
			b = nb
		}
		n, err := c.nc.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			s.in = b[:0]
			c.rest = append(c.rest, b...) // a frame cut by a deadline continues at the next read
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, fmt.Errorf("read: %w", errTimeout)
			}
			return nil, fmt.Errorf("read: %w", err)
		}
	}
}

// register creates a user and returns its id.
func (c *leanConn) register(ctx context.Context, s *scratch, name, password string) (int64, error) {
	f, err := c.call(ctx, s, func(id int64) any {
		return regFrame{MsgID: wire.Reg, Name: name, Password: password, ReqID: id}
	})
	if err != nil {
		return 0, fmt.Errorf("register %s: %w", name, err)
	}
	return f.ID, nil
}

// login logs the connection in as user id in the full dialect, with the
// password or, if token is not empty, the resume token of an earlier
// login, and returns the LOGIN_ACK.
func (c *leanConn) login(ctx context.Context, s *scratch, id int64, password, token string) (*frame, error) {
	f, err := c.call(ctx, s, func(rid int64) any {
		if token != "" {
			return tokenLoginFrame{MsgID: wire.Login, ID: id, Token: token, Dialect: "full", ReqID: rid}
		}
		return loginFrame{MsgID: wire.Login, ID: id, Password: password, Dialect: "full", ReqID: rid}
	})
	if err != nil {
		return nil, fmt.Errorf("login %d: %w", id, err)
	}
	if f.ID != id {
		return nil, fmt.Errorf("login %d: LOGIN_ACK for user %d", id, f.ID)
	}
	return f, nil
}
