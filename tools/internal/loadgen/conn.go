package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/natter-chat/natter/shared/wire"
)

const (
	dialTimeout  = 10 * time.Second
	writeTimeout = 10 * time.Second
	maxInFrame   = 1 << 20 // server frames are bounded by the gateway's max frame plus a few fields
	readBuffer   = 8 << 10 // per connection: several pushes per read system call
)

// errClosed is the error of a connection closed by us.
var errClosed = errors.New("connection closed")

// ReplyError is a reply with errno != 0.
type ReplyError struct {
	Errno  int
	Errmsg string
}

func (e *ReplyError) Error() string { return fmt.Sprintf("errno %d: %s", e.Errno, e.Errmsg) }

// benchMeta is the bench field of a chat, passed through to the recipient.
type benchMeta struct {
	Run string `json:"run"`
	N   int64  `json:"n"`
	T   int64  `json:"t"` // send time, unix nanoseconds
}

// frame is a server frame, with the fields the load generator reads.
type frame struct {
	MsgID   wire.MsgID `json:"msgid"`
	Re      wire.MsgID `json:"re"`
	Errno   int        `json:"errno"`
	Errmsg  string     `json:"errmsg"`
	ReqID   int64      `json:"reqid"`
	ID      int64      `json:"id"`
	Name    string     `json:"name"`
	Mid     string     `json:"mid"`
	Seq     int64      `json:"seq"`
	GroupID int64      `json:"groupid"`
	Pending int64      `json:"pending"`
	LastSeq int64      `json:"lastseq"`
	Token   string     `json:"token"`
	Bench   *benchMeta `json:"bench"`
	// A flood notice (errno 109): the frames dropped since the last one.
	Dropped int `json:"dropped"`
	// A chat's REPLY: the cid was stored before (a resend); the message
	// counts as acknowledged.
	Duplicate bool `json:"duplicate"`
}

// replyFunc receives the reply to a request (possibly with errno != 0), or
// the error that ended the connection before it came.
type replyFunc func(f *frame, err error)

// handlers are a connection's callbacks, run on its reader goroutine; they
// must not block.
type handlers struct {
	push  func(p *pushFrame, at time.Time) // a ONE_CHAT or GROUP_CHAT push; p is valid during the call
	stray func(f *frame)                   // an error frame that answers no request
}

// conn is one full-dialect client connection. Requests get a numeric reqid
// and their reply is routed back to them by a reader goroutine, which also
// hands pushes to a callback (read by scanPush, without allocating and
// without taking any lock). The gateway runs a connection's frames in
// order, so replies come in request order; an error frame without a reqid
// (errno 109: the frame was dropped before it was read) answers the oldest
// request still waiting.
//
// Chats are answered in the order they were sent (the gateway stores one at
// a time per connection), so a chat answered by the store settles every
// older chat still waiting: it was dropped by the flood limit, which
// answers dropped frames at most once a second, counting them ("dropped").
type conn struct {
	nc   net.Conn
	gen  int64 // this connection's number in the run (pushFrame.Gen)
	h    handlers
	done chan struct{} // closed when the reader goroutine ends

	wmu sync.Mutex // serializes writes, and reqid order with them
	buf []byte

	mu       sync.Mutex
	err      error     // why the connection ended; nil while it is up
	failedAt time.Time // when err was set
	nextID   int64
	pending  map[int64]waiting
	order    []int64 // reqids in send order
}

// waiting is a request waiting for its reply.
type waiting struct {
	cb   replyFunc
	at   time.Time // sent
	chat bool      // a ONE_CHAT or GROUP_CHAT: answered in send order
}

// dial connects to a gateway and starts the connection's reader goroutine,
// which close waits for.
func dial(ctx context.Context, d *dialer, addr string, h handlers) (*conn, error) {
	nc, err := d.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	c := &conn{nc: nc, gen: d.conns.Add(1), h: h, done: make(chan struct{}), pending: map[int64]waiting{}}
	go c.readLoop()
	return c, nil
}

// close ends the connection and waits for its reader. Requests still
// waiting get errClosed.
func (c *conn) close() {
	c.fail(errClosed)
	<-c.done
}

// Err is why the connection ended, or nil while it is up.
func (c *conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// failedAt is when the connection ended (zero while it is up).
func (c *conn) failedTime() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failedAt
}

// oldestWait is how long the oldest request still waiting for its reply
// has waited at now; 0 when none waits.
func (c *conn) oldestWait(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range c.order {
		if w, ok := c.pending[id]; ok {
			return now.Sub(w.at)
		}
	}
	return 0
}

func (c *conn) readLoop() {
	defer close(c.done)
	dec := wire.NewDecoder(bufio.NewReaderSize(c.nc, readBuffer), maxInFrame)
	var p pushFrame
	for {
		b, _, err := dec.Next()
		if err != nil {
			c.fail(fmt.Errorf("read: %w", err))
			return
		}
		at := time.Now()
		if scanPush(b, &p) && isPush(p.MsgID) {
			c.push(&p, at)
			continue
		}
		var f frame
		if err := json.Unmarshal(b, &f); err != nil {
			c.fail(fmt.Errorf("read: bad frame from server: %w", err))
			return
		}
		if isPush(f.MsgID) {
			p.fromFrame(&f)
			c.push(&p, at)
			continue
		}
		c.dispatch(&f, at)
	}
}

func (c *conn) push(p *pushFrame, at time.Time) {
	if c.h.push != nil {
		p.Gen = c.gen
		c.h.push(p, at)
	}
}

// answersOldest reports whether an error frame without a reqid answers the
// oldest request waiting: the gateway refused a frame before it could read
// its reqid. Other such frames (the gateway is stopping, the session
// expired, a delivery was interrupted, msgids this tool does not know) are
// about the connection, not about a request.
func answersOldest(f *frame) bool {
	return f.Errno == int(wire.Flood) || f.Errno == int(wire.BadJSON)
}

func (c *conn) dispatch(f *frame, at time.Time) {
	switch {
	case f.MsgID == wire.Kicked:
		c.fail(errors.New("kicked: the user logged in elsewhere"))
		return
	}
	c.mu.Lock()
	var cb replyFunc
	var dropped []replyFunc // chats the flood limit dropped without an answer of their own
	if f.ReqID != 0 {
		w := c.pending[f.ReqID]
		cb = w.cb
		delete(c.pending, f.ReqID)
		switch {
		case w.chat && f.Errno != int(wire.Flood) && f.Errno != int(wire.BadJSON) && f.Errno != int(wire.BadField):
			dropped = c.takeChatsLocked(f.ReqID, -1) // answered in order: older ones were dropped
		case f.Errno == int(wire.Flood) && f.Dropped > 1:
			dropped = c.takeChatsLocked(f.ReqID, f.Dropped-1)
		}
	} else if f.Errno == int(wire.Flood) && f.Dropped > 0 {
		dropped = c.takeChatsLocked(0, f.Dropped)
	} else if f.Errno != 0 && answersOldest(f) {
		for len(c.order) > 0 && cb == nil {
			id := c.order[0]
			c.order = c.order[1:]
			if cb = c.pending[id].cb; cb != nil {
				delete(c.pending, id)
			}
		}
	}
	for len(c.order) > 0 && c.pending[c.order[0]].cb == nil {
		c.order = c.order[1:]
	}
	c.mu.Unlock()
	for _, d := range dropped {
		d(&frame{MsgID: wire.Reply, Errno: int(wire.Flood), Errmsg: "dropped by the flood limit"}, nil)
	}
	switch {
	case cb != nil:
		cb(f, nil)
	case f.Errno != 0 && c.h.stray != nil && len(dropped) == 0:
		c.h.stray(f)
	}
}

// takeChatsLocked removes and returns the callbacks of the oldest chats
// still waiting, sent before request before (0: any), at most n of them
// (n < 0: all). Call with c.mu held.
func (c *conn) takeChatsLocked(before int64, n int) []replyFunc {
	var out []replyFunc
	for _, id := range c.order {
		if (before != 0 && id >= before) || n == 0 {
			break
		}
		if w, ok := c.pending[id]; ok && w.chat {
			out = append(out, w.cb)
			delete(c.pending, id)
			n--
		}
	}
	return out
}

// fail ends the connection with err (once) and fails every waiting request.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err, c.failedAt = err, time.Now()
	cbs := make([]replyFunc, 0, len(c.pending))
	for _, id := range c.order {
		if w, ok := c.pending[id]; ok {
			cbs = append(cbs, w.cb)
		}
	}
	c.pending, c.order = map[int64]waiting{}, nil
	c.mu.Unlock()
	c.nc.Close()
	for _, cb := range cbs {
		cb(nil, err)
	}
}

// request sends the frame build returns for a fresh reqid (which the frame
// must carry) and calls cb exactly once with the reply: from the reader
// goroutine, or from this one if the connection is already broken.
func (c *conn) request(build func(reqid int64) any, cb replyFunc) {
	c.requestKind(false, build, cb)
}

// requestChat is request for a chat (answered in send order).
func (c *conn) requestChat(build func(reqid int64) any, cb replyFunc) {
	c.requestKind(true, build, cb)
}

func (c *conn) requestKind(chat bool, build func(reqid int64) any, cb replyFunc) {
	c.wmu.Lock()
	c.mu.Lock()
	if err := c.err; err != nil {
		c.mu.Unlock()
		c.wmu.Unlock()
		cb(nil, err)
		return
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = waiting{cb: cb, at: time.Now(), chat: chat}
	c.order = append(c.order, id)
	c.mu.Unlock()
	err := c.writeLocked(build(id))
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
	}
}

// call sends a request and waits for its reply; a reply with errno != 0 is
// returned as a *ReplyError along with the frame.
func (c *conn) call(ctx context.Context, build func(reqid int64) any) (*frame, error) {
	ch := make(chan struct {
		f   *frame
		err error
	}, 1)
	c.request(build, func(f *frame, err error) {
		ch <- struct {
			f   *frame
			err error
		}{f, err}
	})
	select {
	case r := <-ch:
		if r.err == nil && r.f.Errno != 0 {
			r.err = &ReplyError{Errno: r.f.Errno, Errmsg: r.f.Errmsg}
		}
		return r.f, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// send writes a frame that gets no reply (an ack without reqid).
func (c *conn) send(v any) error {
	c.wmu.Lock()
	err := c.writeLocked(v)
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
	}
	return err
}

func (c *conn) writeLocked(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	c.buf = append(append(c.buf[:0], b...), wire.TermNewline)
	c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.nc.Write(c.buf); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// Client frames.

type regFrame struct {
	MsgID    wire.MsgID `json:"msgid"`
	Name     string     `json:"name"`
	Password string     `json:"password"`
	ReqID    int64      `json:"reqid"`
}

type loginFrame struct {
	MsgID    wire.MsgID `json:"msgid"`
	ID       int64      `json:"id"`
	Password string     `json:"password"`
	Dialect  string     `json:"dialect"`
	ReqID    int64      `json:"reqid"`
	LastSeq  int64      `json:"lastseq,omitempty"` // a login again: the last seq processed
}

type tokenLoginFrame struct {
	MsgID   wire.MsgID `json:"msgid"`
	ID      int64      `json:"id"`
	Token   string     `json:"token"`
	Dialect string     `json:"dialect"`
	ReqID   int64      `json:"reqid"`
	LastSeq int64      `json:"lastseq,omitempty"`
}

type pingFrame struct {
	MsgID wire.MsgID `json:"msgid"`
	ReqID int64      `json:"reqid"`
}

type chatFrame struct {
	MsgID wire.MsgID `json:"msgid"`
	ToID  int64      `json:"toid"`
	Msg   string     `json:"msg"`
	ReqID int64      `json:"reqid"`
	CID   string     `json:"cid"`
	Bench benchMeta  `json:"bench"`
}

type groupChatFrame struct {
	MsgID   wire.MsgID `json:"msgid"`
	GroupID int64      `json:"groupid"`
	Msg     string     `json:"msg"`
	ReqID   int64      `json:"reqid"`
	CID     string     `json:"cid"`
	Bench   benchMeta  `json:"bench"`
}

type createGroupFrame struct {
	MsgID wire.MsgID `json:"msgid"`
	Name  string     `json:"groupname"`
	Desc  string     `json:"groupdesc"`
	ReqID int64      `json:"reqid"`
}

type groupFrame struct {
	MsgID   wire.MsgID `json:"msgid"`
	GroupID int64      `json:"groupid"`
	ReqID   int64      `json:"reqid"`
}

type ackFrame struct {
	MsgID wire.MsgID `json:"msgid"`
	Seq   int64      `json:"seq"`
	ReqID int64      `json:"reqid,omitempty"`
}

// register creates a user and returns its id.
func (c *conn) register(ctx context.Context, name, password string) (int64, error) {
	f, err := c.call(ctx, func(id int64) any {
		return regFrame{MsgID: wire.Reg, Name: name, Password: password, ReqID: id}
	})
	if err != nil {
		return 0, fmt.Errorf("register %s: %w", name, err)
	}
	return f.ID, nil
}

// login logs the connection in as user id in the full dialect and returns
// the LOGIN_ACK (pending says how many replayed pushes follow). With a
// token it logs in with the resume token instead of the password; lastseq
// (0: none) is the last seq the user processed, which the gateway takes as
// acknowledged.
func (c *conn) login(ctx context.Context, id int64, password, token string, lastseq int64) (*frame, error) {
	f, err := c.call(ctx, func(rid int64) any {
		if token != "" {
			return tokenLoginFrame{MsgID: wire.Login, ID: id, Token: token, Dialect: "full", ReqID: rid, LastSeq: lastseq}
		}
		return loginFrame{MsgID: wire.Login, ID: id, Password: password, Dialect: "full", ReqID: rid, LastSeq: lastseq}
	})
	if err != nil {
		return nil, fmt.Errorf("login %d: %w", id, err)
	}
	if f.ID != id {
		return nil, fmt.Errorf("login %d: LOGIN_ACK for user %d", id, f.ID)
	}
	return f, nil
}

// createGroup creates a group (the connection's user joins it as creator)
// and returns its id.
func (c *conn) createGroup(ctx context.Context, name string) (int64, error) {
	f, err := c.call(ctx, func(id int64) any {
		return createGroupFrame{MsgID: wire.CreateGroup, Name: name, Desc: "natter bench", ReqID: id}
	})
	if err != nil {
		return 0, fmt.Errorf("create group %s: %w", name, err)
	}
	if f.GroupID <= 0 {
		return 0, fmt.Errorf("create group %s: no groupid in the reply", name)
	}
	return f.GroupID, nil
}

// joinGroup joins the connection's user to group gid.
func (c *conn) joinGroup(ctx context.Context, gid int64) error {
	if _, err := c.call(ctx, func(id int64) any {
		return groupFrame{MsgID: wire.AddGroup, GroupID: gid, ReqID: id}
	}); err != nil {
		return fmt.Errorf("join group %d: %w", gid, err)
	}
	return nil
}
