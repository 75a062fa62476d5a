package chatclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/wire"
)

// Printer shows what happens: as the original client's text, or as JSON
// lines (one object per event, with an "event" field) for scripts. It
// implements Events; all output goes through one lock, so lines never mix.
type Printer struct {
	mu    sync.Mutex
	w     io.Writer
	json  bool
	names map[int64]string // names of friends and senders, for presence lines
	down  bool             // the connection is down (say so once, and say when it is back)
	wasUp bool             // there was a connection once

	ended chan error // SessionEnded, for the terminal's loop
}

// NewPrinter returns a Printer writing to w; jsonLines selects JSON lines.
func NewPrinter(w io.Writer, jsonLines bool) *Printer {
	return &Printer{w: w, json: jsonLines, names: map[int64]string{}, ended: make(chan error, 1)}
}

// Ended delivers the reason a session ended without a LOGINOUT.
func (p *Printer) Ended() <-chan error { return p.ended }

func (p *Printer) event(name string, fields map[string]any) {
	fields["event"] = name
	p.mu.Lock()
	defer p.mu.Unlock()
	b, err := api.Marshal(fields)
	if err != nil { // a bug: fields are numbers and strings
		o := wire.Object{}
		o.SetString("event", name)
		o.SetString("error", "encode: "+err.Error())
		b = o.Encode()
	}
	p.w.Write(append(b, '\n'))
}

// Textf prints a line of text (text mode only).
func (p *Printer) Textf(format string, args ...any) {
	if p.json {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// Prompt prints s without a newline (text mode only).
func (p *Printer) Prompt(s string) {
	if p.json {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	io.WriteString(p.w, s)
}

// Message prints a chat as the original client does:
// `<time> [<id>]<name> said: <msg>`, and group chats prefixed with
// `群消息[<groupid>]:` ("group message").
func (p *Printer) Message(m Message) {
	if p.json {
		var o wire.Object
		if err := json.Unmarshal(m.Raw, &o); err != nil {
			o = wire.Object{}
		}
		o.SetString("event", "message")
		p.mu.Lock()
		defer p.mu.Unlock()
		p.w.Write(append(o.Encode(), '\n'))
		return
	}
	p.mu.Lock()
	p.names[m.FromID] = m.FromName
	p.mu.Unlock()
	line := fmt.Sprintf("%s [%d]%s said: %s", clean(m.Time), m.FromID, clean(m.FromName), clean(m.Text))
	if m.GroupID != 0 {
		line = fmt.Sprintf("群消息[%d]:%s", m.GroupID, line)
	}
	p.Textf("%s", line)
}

// Presence prints a friend's change of state.
func (p *Printer) Presence(id int64, state string) {
	if p.json {
		p.event("presence", map[string]any{"id": id, "state": state})
		return
	}
	p.mu.Lock()
	name := p.names[id]
	p.mu.Unlock()
	p.Textf("friend [%d]%s is %s", id, clean(name), clean(state))
}

// Connection prints a lost connection once, and the reconnection.
func (p *Printer) Connection(s ConnState) {
	p.mu.Lock()
	wasDown, wasUp := p.down, p.wasUp
	p.down = !s.Up
	p.wasUp = p.wasUp || s.Up
	p.mu.Unlock()
	if p.json {
		f := map[string]any{"up": s.Up, "addr": s.Addr}
		if s.Up {
			f["resumed"] = s.Resumed
		} else {
			f["error"] = errText(s.Err)
			f["retry_ms"] = s.Retry.Milliseconds()
			f["session"] = s.Session
		}
		p.event("connection", f)
		return
	}
	switch {
	case s.Up && wasDown && s.Resumed:
		p.Textf("*** reconnected to %s; session resumed", s.Addr)
	case s.Up && wasDown:
		p.Textf("*** connected to %s", s.Addr)
	case !s.Up && !wasDown:
		what := "connection to " + s.Addr + " lost"
		if !wasUp {
			what = "cannot reach " + s.Addr
		}
		hint := ""
		if s.Session {
			hint = " (what you type is sent once the session is back)"
		}
		p.Textf("*** %s (%s); retrying...%s", what, errText(s.Err), hint)
	}
}

// SessionEnded prints why the session ended.
func (p *Printer) SessionEnded(err error) {
	if p.json {
		p.event("session_ended", map[string]any{"error": errText(err)})
	} else {
		p.Textf("*** logged out: %s", errText(err))
	}
	select {
	case p.ended <- err:
	default:
	}
}

// LoggedIn prints the user, the friend list and the group list as the
// original client does.
func (p *Printer) LoggedIn(s *Session) {
	p.rememberFriends(s.Friends)
	if p.json {
		p.event("login", map[string]any{"id": s.ID, "name": s.Name, "friends": nonNil(s.Friends),
			"groups": nonNil(s.Groups), "pending": s.Pending})
		return
	}
	var b strings.Builder
	b.WriteString("======================login user======================\n")
	fmt.Fprintf(&b, "current login user => id:%d name:%s\n", s.ID, clean(s.Name))
	b.WriteString("----------------------friend list---------------------\n")
	writeFriends(&b, s.Friends)
	b.WriteString("----------------------group list----------------------\n")
	writeGroups(&b, s.Groups)
	b.WriteString("======================================================")
	if s.Pending > 0 {
		fmt.Fprintf(&b, "\n%d message(s) arrived while you were away:", s.Pending)
	}
	p.Textf("%s", b.String())
}

// Registered prints a new account's id.
func (p *Printer) Registered(id int64, name string) {
	if p.json {
		p.event("registered", map[string]any{"id": id, "name": name})
		return
	}
	p.Textf("%s register success, userid is %d, do not forget it!", clean(name), id)
}

// Result prints the outcome of a command.
func (p *Printer) Result(r Result) {
	if r.OK() {
		p.rememberFriends(r.Friends)
	}
	if p.json {
		f := map[string]any{"command": r.Command.Line, "ok": r.OK()}
		if r.Err != nil {
			f["error"] = r.Err.Error()
		} else {
			f["errno"], f["errmsg"] = r.Errno, r.Errmsg
		}
		switch {
		case r.Mid != "":
			f["mid"] = r.Mid
			f["duplicate"] = r.Duplicate
		case r.GroupID != 0:
			f["groupid"] = r.GroupID
		case r.Friends != nil:
			f["friends"] = r.Friends
		case r.Groups != nil:
			f["groups"] = r.Groups
		case r.Group != nil:
			f["group"] = r.Group
		}
		p.event("result", f)
		return
	}
	if !r.OK() {
		if r.Err != nil {
			p.Textf("%s: %v", r.Command.Name, r.Err)
		} else {
			p.Textf("%s failed: %s (errno %d)", r.Command.Name, clean(r.Errmsg), r.Errno)
		}
		return
	}
	req := r.Command.req
	var b strings.Builder
	switch r.Command.Name {
	case "chat":
		fmt.Fprintf(&b, "sent to [%v]", req["toid"])
	case "groupchat":
		fmt.Fprintf(&b, "sent to group [%v]", req["groupid"])
	case "addfriend":
		fmt.Fprintf(&b, "[%v] is now your friend", req["friendid"])
	case "removefriend":
		fmt.Fprintf(&b, "[%v] is no longer your friend", req["friendid"])
	case "creategroup":
		fmt.Fprintf(&b, "created group %d (%s); others join it with addgroup:%d", r.GroupID, clean(fmt.Sprint(req["groupname"])), r.GroupID)
	case "addgroup":
		fmt.Fprintf(&b, "joined group %v", req["groupid"])
	case "leavegroup":
		fmt.Fprintf(&b, "left group %v", req["groupid"])
	case "friends":
		b.WriteString("----------------------friend list---------------------\n")
		writeFriends(&b, r.Friends)
		b.WriteString("------------------------------------------------------")
	case "groups":
		b.WriteString("----------------------group list----------------------\n")
		writeGroups(&b, r.Groups)
		b.WriteString("------------------------------------------------------")
	case "members":
		if r.Group != nil {
			writeGroups(&b, []Group{*r.Group})
		}
		b.WriteString("------------------------------------------------------")
	case "loginout":
		b.WriteString("logged out")
	}
	if r.Duplicate {
		b.WriteString(" (it had reached the server before the connection was lost)")
	}
	p.Textf("%s", strings.TrimSuffix(b.String(), "\n"))
}

func (p *Printer) rememberFriends(fs []Friend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range fs {
		p.names[f.ID] = f.Name
	}
}

// writeFriends writes `id name state` lines, as the original client.
func writeFriends(b *strings.Builder, fs []Friend) {
	for _, f := range fs {
		fmt.Fprintf(b, "%d %s %s\n", f.ID, clean(f.Name), clean(f.State))
	}
}

// writeGroups writes `gid name desc`, then `id name state role` per member,
// as the original client.
func writeGroups(b *strings.Builder, gs []Group) {
	for _, g := range gs {
		fmt.Fprintf(b, "%d %s %s\n", g.ID, clean(g.Name), clean(g.Desc))
		for _, u := range g.Users {
			fmt.Fprintf(b, "%d %s %s %s\n", u.ID, clean(u.Name), clean(u.State), clean(u.Role))
		}
	}
}

// clean replaces control characters in text from others (terminal escape
// sequences, line breaks that could fake a status line) with U+FFFD.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '\uFFFD'
		}
		return r
	}, s)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func errText(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, io.EOF):
		return "closed by the server"
	}
	return err.Error()
}

var _ Events = (*Printer)(nil)
