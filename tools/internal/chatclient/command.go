package chatclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/natter-chat/natter/shared/backoff"
	"github.com/natter-chat/natter/shared/wire"
)

// Help is the command list, in the original client's order with natter's
// additions after it.
const Help = `show command list >>>
help : show all commands, format help
chat : one-to-one chat, format chat:friendid:message
addfriend : add a friend, format addfriend:friendid
creategroup : create a group, format creategroup:groupname:groupdesc
addgroup : join a group, format addgroup:groupid
groupchat : group chat, format groupchat:groupid:message
loginout : log out, format loginout
friends : list friends with their state, format friends
groups : list your groups with their members, format groups
members : list a group's members, format members:groupid
removefriend : remove a friend, format removefriend:friendid
leavegroup : leave a group, format leavegroup:groupid
quit : quit, format quit`

// Commands handled by the caller rather than sent.
var (
	ErrHelp = errors.New("help")
	ErrQuit = errors.New("quit")
)

// Command is a parsed command line.
type Command struct {
	Name string // chat, addfriend, ...
	Line string // as typed

	req    map[string]any
	resend bool // safe to send again when a reply was lost
	logout bool
}

// ParseCommand parses one line of the client's command language. It
// returns ErrHelp for help, ErrQuit for quit, and an error saying what is
// wrong otherwise (the caller shows the help).
func ParseCommand(line string) (Command, error) {
	line = strings.TrimSpace(line)
	name, rest, _ := strings.Cut(line, ":")
	cmd := Command{Name: name, Line: line, resend: true}
	var err error
	id := func(what string) int64 {
		n, perr := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
		if perr != nil || n <= 0 {
			err = fmt.Errorf("%s must be a positive number", what)
		}
		return n
	}
	idAndText := func(what string) (int64, string) {
		sid, text, ok := strings.Cut(rest, ":")
		n, perr := strconv.ParseInt(strings.TrimSpace(sid), 10, 64)
		switch {
		case !ok:
			err = fmt.Errorf("format %s:%s:message", name, what)
		case perr != nil || n <= 0:
			err = fmt.Errorf("%s must be a positive number", what)
		case text == "":
			err = errors.New("the message is empty")
		}
		return n, text
	}
	switch name {
	case "help":
		return cmd, ErrHelp
	case "quit":
		return cmd, ErrQuit
	case "chat":
		to, text := idAndText("friendid")
		cmd.req = map[string]any{"msgid": wire.OneChat, "toid": to, "msg": text}
	case "groupchat":
		g, text := idAndText("groupid")
		cmd.req = map[string]any{"msgid": wire.GroupChat, "groupid": g, "msg": text}
	case "addfriend":
		cmd.req = map[string]any{"msgid": wire.AddFriend, "friendid": id("friendid")}
	case "removefriend":
		cmd.req = map[string]any{"msgid": wire.RemoveFriend, "friendid": id("friendid")}
	case "addgroup":
		cmd.req = map[string]any{"msgid": wire.AddGroup, "groupid": id("groupid")}
	case "leavegroup":
		cmd.req = map[string]any{"msgid": wire.LeaveGroup, "groupid": id("groupid")}
	case "members":
		cmd.req = map[string]any{"msgid": wire.ListMembers, "groupid": id("groupid")}
	case "creategroup":
		gname, desc, _ := strings.Cut(rest, ":")
		if gname == "" {
			err = errors.New("format creategroup:groupname:groupdesc")
		}
		cmd.req = map[string]any{"msgid": wire.CreateGroup, "groupname": gname, "groupdesc": desc}
		cmd.resend = false // a second one would make a second group
	case "friends":
		cmd.req = map[string]any{"msgid": wire.ListFriends}
	case "groups":
		cmd.req = map[string]any{"msgid": wire.ListGroups}
	case "loginout":
		cmd.req = map[string]any{"msgid": wire.Loginout}
		cmd.logout = true
	default:
		err = fmt.Errorf("invalid input command %q", name)
	}
	if err != nil {
		return Command{}, fmt.Errorf("%s: %w", name, err)
	}
	if _, ok := cmd.req["msg"]; ok {
		// Like the original client: the time the message was written,
		// which is also when it was queued if the connection was down. The
		// cid makes sending it again after a lost reply safe.
		cmd.req["time"] = time.Now().Format(time.DateTime)
		cmd.req["cid"] = uuid.NewString()
	}
	return cmd, nil
}

// Result is the outcome of a command.
type Result struct {
	Command Command
	Err     error      // a local failure: not logged in, outcome unknown, closed
	Errno   wire.Errno // the server's answer
	Errmsg  string

	Mid       string // chats: the message's id
	Duplicate bool   // chats: the server had it already (a resend)
	GroupID   int64  // creategroup
	Friends   []Friend
	Groups    []Group
	Group     *Group
}

// OK reports success.
func (r Result) OK() bool { return r.Err == nil && r.Errno == wire.OK }

type pending struct {
	cmd  Command
	done func(Result)
	once sync.Once
}

func (p *pending) finish(r Result) {
	p.once.Do(func() {
		r.Command = p.cmd
		if p.done != nil {
			p.done(r)
		}
	})
}

// Submit queues cmd; done gets its result (on the client's goroutine). The
// outbox is sent in order while a session is up: what is queued while the
// connection is down is sent after the session is resumed.
func (c *Client) Submit(cmd Command, done func(Result)) {
	p := &pending{cmd: cmd, done: done}
	c.mu.Lock()
	if c.closed || c.creds == nil {
		c.mu.Unlock()
		p.finish(Result{Err: ErrNotLoggedIn})
		return
	}
	c.outbox = append(c.outbox, p)
	c.notify()
	c.mu.Unlock()
}

// Do submits cmd and waits for its result.
func (c *Client) Do(ctx context.Context, cmd Command) Result {
	ch := make(chan Result, 1)
	c.Submit(cmd, func(r Result) { ch <- r })
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		return Result{Command: cmd, Err: ctx.Err()}
	}
}

// Queued is the number of commands not yet answered.
func (c *Client) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.outbox)
}

// Drain waits until every queued command is answered.
func (c *Client) Drain(ctx context.Context) error {
	for {
		c.mu.Lock()
		n, changed := len(c.outbox), c.changed
		c.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%d command(s) not sent: %w", n, ctx.Err())
		}
	}
}

// head waits for the first queued command.
func (c *Client) head(ctx context.Context) *pending {
	for {
		c.mu.Lock()
		var p *pending
		if len(c.outbox) > 0 {
			p = c.outbox[0]
		}
		changed := c.changed
		c.mu.Unlock()
		if p != nil {
			return p
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// pop removes p from the outbox, if it is still there, and finishes it
// with r.
func (c *Client) pop(p *pending, r Result) {
	c.mu.Lock()
	for i, q := range c.outbox {
		if q == p {
			c.outbox = append(c.outbox[:i:i], c.outbox[i+1:]...)
			break
		}
	}
	if c.inflight == p {
		c.inflight = nil
	}
	c.notify()
	c.mu.Unlock()
	p.finish(r)
}

// Resend policy for answers that say a service did not answer (errno 110).
const (
	maxUnavailable   = 5
	unavailablePause = 500 * time.Millisecond
	// sessionlessGrace: after errno 103 the connection is left this long
	// to deliver the KICKED that usually follows before it is replaced.
	sessionlessGrace = 2 * time.Second
)

// sendLoop sends the outbox in order, one command at a time.
func (c *Client) sendLoop(ctx context.Context) {
	for ctx.Err() == nil {
		p := c.head(ctx)
		if p == nil {
			return
		}
		c.send(ctx, p)
	}
}

// send sends p on the session's current connection until it is answered;
// a command whose answer was lost is sent again on the next connection if
// that is safe (chats carry a cid; joins, leaves and lists are
// idempotent), else its outcome is reported unknown.
func (c *Client) send(ctx context.Context, p *pending) {
	sent, unavailable := false, 0
	for {
		cn, err := c.waitConn(ctx, true)
		if errors.Is(err, ErrNotLoggedIn) {
			if sent && !p.cmd.logout {
				err = ErrOutcomeUnknown
			}
			if p.cmd.logout {
				err = nil // logged out one way or another
			}
			c.pop(p, Result{Err: err})
			return
		}
		if err != nil {
			return // closed: Run fails what is left
		}
		c.mu.Lock()
		c.inflight = p
		cr := c.creds
		c.mu.Unlock()
		if p.cmd.logout {
			// Everything shown is acknowledged before the session ends,
			// and nothing more is shown (it comes at the next login).
			cn.send(map[string]any{"msgid": wire.Ack, "seq": c.stopShowing()})
		}
		req := make(map[string]any, len(p.cmd.req)+1)
		for k, v := range p.cmd.req {
			req[k] = v
		}
		rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		f, err := cn.call(rctx, req)
		cancel()
		if errors.Is(err, errNotSent) {
			continue // the connection was gone before the command was written
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			sent = true
			// No answer: the connection died, or the gateway is stuck (then
			// replace the connection: the session is resumed elsewhere).
			cn.fail(fmt.Errorf("no answer to %s: %w", p.cmd.Name, err))
			if !p.cmd.resend {
				c.pop(p, Result{Err: ErrOutcomeUnknown})
				return
			}
			continue
		}
		switch f.Errno {
		case wire.NotLoggedIn:
			// This connection's session is gone, usually because a newer
			// login replaced it and KICKED follows. Stop using it; if no
			// KICKED comes, replace it and resume.
			c.mu.Lock()
			if c.cur == cn {
				c.live = false
				c.notify()
			}
			c.mu.Unlock()
			time.AfterFunc(sessionlessGrace, func() { cn.fail(errors.New("session lost")) })
			continue
		case wire.SessionExpired, wire.GatewayStopping:
			// Not done; the gateway closes the connection: send it again
			// once the session is resumed.
			cn.fail(fmt.Errorf("gateway: errno %d: %s", f.Errno, f.Errmsg))
			continue
		case wire.Flood:
			backoff.Sleep(ctx, time.Second) // dropped unread: send it again, slower
			continue
		case wire.Unavailable:
			if !p.cmd.resend {
				c.pop(p, Result{Err: ErrOutcomeUnknown}) // the group may exist
				return
			}
			if unavailable < maxUnavailable {
				unavailable++
				sent = true
				backoff.Sleep(ctx, unavailablePause)
				continue
			}
		}
		r := Result{
			Errno: f.Errno, Errmsg: f.Errmsg, Mid: f.Mid, Duplicate: f.Duplicate,
			GroupID: f.GroupID, Friends: f.Friends, Groups: f.Groups, Group: f.Group,
		}
		if sent && p.cmd.Name == "leavegroup" && f.Errno == wire.NotMember {
			r.Errno, r.Errmsg = wire.OK, "" // the first try did it
		}
		if p.cmd.logout {
			if r.OK() {
				c.finishLogout(cr, r)
				return
			}
			c.resumeShowing()
		}
		c.pop(p, r)
		return
	}
}

// text returns a string field's text, or its raw JSON if it is not a
// string.
func text(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	return string(raw)
}
