package chatclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/wire"
)

const (
	dialTimeout  = 5 * time.Second
	writeTimeout = 10 * time.Second
	maxInFrame   = 1 << 20 // server frames: the gateway's max frame plus a few fields
)

// errConnLost is the error of requests whose connection ended before their
// reply came; errNotSent of requests whose connection had ended before
// they were written.
var (
	errConnLost = errors.New("connection lost")
	errNotSent  = errors.New("not sent: the connection is closed")
)

// frame is a server frame with the fields the client reads; Raw keeps the
// whole object for printing and passing through. Pushes carry fields their
// sender chose (extras pass through), so a frame is decoded field by field
// and a field of an unexpected type is left at its zero value: nothing a
// sender writes can make a message undecodable.
type frame struct {
	MsgID      wire.MsgID
	Re         wire.MsgID
	Errno      wire.Errno
	Errmsg     string
	ReqID      string
	ID         int64
	Name       string
	State      string
	Mid        string
	Seq        int64
	LastSeq    int64
	Pending    int64
	Token      string
	GroupID    int64
	Duplicate  bool
	Friends    []Friend
	Groups     []Group
	Group      *Group
	Incomplete json.RawMessage
	Msg        json.RawMessage // a string; raw so that it can be shown whatever it is
	Time       json.RawMessage

	Raw []byte
}

// decodeFrame decodes a server frame leniently (see frame). Only a frame
// that is not a JSON object at all is an error.
func decodeFrame(b []byte) (*frame, error) {
	var o map[string]json.RawMessage
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, err
	}
	f := &frame{Raw: append([]byte(nil), b...), Incomplete: o["incomplete"], Msg: o["msg"], Time: o["time"]}
	field(o, "msgid", &f.MsgID)
	field(o, "re", &f.Re)
	field(o, "errno", &f.Errno)
	field(o, "errmsg", &f.Errmsg)
	field(o, "reqid", &f.ReqID)
	field(o, "id", &f.ID)
	field(o, "name", &f.Name)
	field(o, "state", &f.State)
	field(o, "mid", &f.Mid)
	field(o, "seq", &f.Seq)
	field(o, "lastseq", &f.LastSeq)
	field(o, "pending", &f.Pending)
	field(o, "token", &f.Token)
	field(o, "groupid", &f.GroupID)
	field(o, "duplicate", &f.Duplicate)
	field(o, "friends", &f.Friends)
	field(o, "groups", &f.Groups)
	field(o, "group", &f.Group)
	return f, nil
}

// field sets *dst from o[key] if it is there and of the right type.
func field[T any](o map[string]json.RawMessage, key string, dst *T) {
	raw, ok := o[key]
	if !ok {
		return
	}
	var v T
	if json.Unmarshal(raw, &v) == nil {
		*dst = v
	}
}

// Friend is a friend as LOGIN_ACK and LIST_FRIENDS give it.
type Friend struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
}

// Group is a group as LOGIN_ACK, LIST_GROUPS and LIST_MEMBERS give it.
type Group struct {
	ID    int64    `json:"id"`
	Name  string   `json:"groupname"`
	Desc  string   `json:"groupdesc"`
	Users []Member `json:"users"`
}

// Member is a group's member.
type Member struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
	Role  string `json:"role"`
}

// conn is one newline-framed (full dialect) connection to a gateway. A
// reader goroutine routes replies to their requests by reqid, hands every
// other frame to onFrame, and ends when the connection does; close waits for
// it.
type conn struct {
	nc      net.Conn
	addr    string
	onFrame func(c *conn, f *frame) // runs on the reader goroutine, in arrival order
	done    chan struct{}           // closed when the reader has ended

	wmu sync.Mutex // one writer at a time

	mu      sync.Mutex
	err     error // why the connection ended
	nextID  uint64
	waiting map[string]waiter
}

// waiter is a request waiting for its reply.
type waiter struct {
	ch     chan *frame  // gets the reply; closed if the connection ends first
	onSync func(*frame) // if set, runs on the reader goroutine before the reply is handed over
}

// dial connects to addr, with TLS when conf is not nil (the handshake
// included, so that a certificate the client does not trust is a dial
// error).
func dial(ctx context.Context, addr string, conf *tls.Config, onFrame func(*conn, *frame)) (*conn, error) {
	d := net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second}
	var nc net.Conn
	var err error
	if conf != nil {
		td := tls.Dialer{NetDialer: &d, Config: conf}
		nc, err = td.DialContext(ctx, "tcp", addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	c := &conn{nc: nc, addr: addr, onFrame: onFrame, done: make(chan struct{}), waiting: map[string]waiter{}}
	go c.readLoop()
	return c, nil
}

func (c *conn) readLoop() {
	defer close(c.done)
	dec := wire.NewDecoder(bufio.NewReader(c.nc), maxInFrame)
	for {
		b, _, err := dec.Next()
		if err != nil {
			c.fail(err)
			return
		}
		f, err := decodeFrame(b)
		if err != nil {
			c.fail(fmt.Errorf("bad frame from the server: %w", err))
			return
		}
		if f.ReqID != "" {
			c.mu.Lock()
			w, ok := c.waiting[f.ReqID]
			delete(c.waiting, f.ReqID)
			c.mu.Unlock()
			if ok {
				if w.onSync != nil {
					w.onSync(f)
				}
				w.ch <- f
				continue
			}
		}
		c.onFrame(c, f)
	}
}

// fail ends the connection with err (the first error wins) and answers
// every waiting request with nothing.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	for id, w := range c.waiting {
		close(w.ch)
		delete(c.waiting, id)
	}
	c.mu.Unlock()
	c.nc.Close()
}

// Err is why the connection ended; nil while it is up.
func (c *conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *conn) close() {
	c.fail(errors.New("closed by the client"))
	<-c.done
}

// send writes one frame.
func (c *conn) send(v any) error {
	b, err := api.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	b = append(b, '\n')
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.nc.Write(b); err != nil {
		c.fail(err)
		return fmt.Errorf("%w: %v", errConnLost, err)
	}
	return nil
}

// request sends req with a fresh reqid and returns a channel that gets its
// reply, or is closed without one when the connection ends first. onSync,
// if not nil, runs on the reader goroutine before the reply is handed over,
// so that state it sets is in place before the next frame is read.
func (c *conn) request(req map[string]any, onSync func(*frame)) (<-chan *frame, error) {
	ch := make(chan *frame, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w (%v)", errNotSent, c.err)
	}
	c.nextID++
	id := "c" + strconv.FormatUint(c.nextID, 10)
	c.waiting[id] = waiter{ch: ch, onSync: onSync}
	c.mu.Unlock()
	req["reqid"] = id
	if err := c.send(req); err != nil {
		return nil, err
	}
	return ch, nil
}

// call sends req and waits for its reply.
func (c *conn) call(ctx context.Context, req map[string]any) (*frame, error) {
	ch, err := c.request(req, nil)
	if err != nil {
		return nil, err
	}
	select {
	case f, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("%w: %v", errConnLost, c.Err())
		}
		return f, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
