package chatclient

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"
)

// Terminal is the interactive client: the original's menu (login,
// register, quit), then commands until loginout or quit.
type Terminal struct {
	c     *Client
	p     *Printer
	lines <-chan input  // input lines; closed at end of input
	echo  func(on bool) // turns the terminal's echo on or off (no-op when not a terminal)
	keep  bool          // Chat: the end of input does not end the session
}

// KeepOnEOF makes Chat keep running at the end of input, until its context
// ends (scripts that print events and give no input).
func (t *Terminal) KeepOnEOF() { t.keep = true }

// IsEOF reports whether Chat ended because its input did.
func IsEOF(err error) bool { return errors.Is(err, errEOF) }

// NewTerminal reads lines from in. setEcho, if not nil, switches the
// terminal's echo (off while a password is typed).
func NewTerminal(c *Client, p *Printer, in io.Reader, setEcho func(on bool)) *Terminal {
	if setEcho == nil {
		setEcho = func(bool) {}
	}
	return &Terminal{c: c, p: p, lines: readLines(in), echo: setEcho}
}

// maxLine is the longest input line taken; longer ones are refused.
const maxLine = 64 << 10

// input is one line of input.
type input struct {
	text    string
	tooLong bool // the line was longer than maxLine and was dropped
}

// readLines reads in line by line on a goroutine of its own, which ends at
// end of input (a blocked read of standard input cannot be interrupted).
func readLines(in io.Reader) <-chan input {
	ch := make(chan input)
	go func() {
		defer close(ch)
		r := bufio.NewReaderSize(in, maxLine)
		for {
			line, err := r.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = r.ReadSlice('\n') // skip the rest of the line
				}
				ch <- input{tooLong: true}
			} else if len(line) > 0 {
				ch <- input{text: strings.TrimRight(string(line), "\r\n")}
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// errEOF ends the terminal at end of input.
var errEOF = errors.New("end of input")

func (t *Terminal) read(ctx context.Context) (string, error) {
	select {
	case l, ok := <-t.lines:
		if !ok {
			return "", errEOF
		}
		if l.tooLong {
			t.p.Textf("the line is too long (at most %d bytes)", maxLine)
		}
		return l.text, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (t *Terminal) ask(ctx context.Context, prompt string) (string, error) {
	t.p.Prompt(prompt)
	return t.read(ctx)
}

func (t *Terminal) askSecret(ctx context.Context, prompt string) (string, error) {
	t.p.Prompt(prompt)
	t.echo(false)
	defer t.echo(true)
	s, err := t.read(ctx)
	t.p.Textf("")
	return s, err
}

// Run shows the menu until quit, end of input or ctx ends.
func (t *Terminal) Run(ctx context.Context) error {
	for {
		t.p.Textf("========================\n1. login\n2. register\n3. quit\n========================")
		choice, err := t.ask(ctx, "choice:")
		if err != nil {
			return nil
		}
		switch strings.TrimSpace(choice) {
		case "1":
			err = t.login(ctx)
		case "2":
			err = t.register(ctx)
		case "3":
			return nil
		default:
			t.p.Textf("invalid input!")
		}
		if err != nil {
			return nil // end of input, quit, or ctx
		}
	}
}

func (t *Terminal) register(ctx context.Context) error {
	name, err := t.ask(ctx, "username:")
	if err != nil {
		return err
	}
	pw, err := t.askSecret(ctx, "userpassword:")
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, t.c.cfg.Timeout)
	defer cancel()
	id, err := t.c.Register(rctx, name, pw)
	var le *LoginError
	switch {
	case errors.As(err, &le) && le.Errmsg == "name is already exist":
		t.p.Textf("%s is already exist, register error!", name)
	case err != nil:
		t.p.Textf("register error: %v", err)
	default:
		t.p.Registered(id, name)
	}
	return nil
}

func (t *Terminal) login(ctx context.Context) error {
	sid, err := t.ask(ctx, "userid:")
	if err != nil {
		return err
	}
	pw, err := t.askSecret(ctx, "userpassword:")
	if err != nil {
		return err
	}
	id, perr := strconv.ParseInt(strings.TrimSpace(sid), 10, 64)
	if perr != nil || id <= 0 {
		t.p.Textf("the user id is a number")
		return nil
	}
	select {
	case <-t.p.Ended(): // an earlier session's end, already shown
	default:
	}
	rctx, cancel := context.WithTimeout(ctx, t.c.cfg.Timeout)
	defer cancel()
	_, err = t.c.Login(rctx, id, pw)
	if err != nil {
		t.p.Textf("%v", err) // the server's errmsg, as the original client prints it
		return nil
	}
	return t.Chat(ctx) // the printer showed the session, before its first message
}

// Chat reads commands until loginout (nil: back to the menu), quit or end
// of input (errEOF / ErrQuit, after the outbox is sent and everything
// shown is acknowledged), or the session ends.
func (t *Terminal) Chat(ctx context.Context) error {
	lines := t.lines
	for {
		var line string
		select {
		case l, ok := <-lines:
			if !ok && t.keep {
				lines = nil // wait for ctx or the session's end
				continue
			}
			if !ok {
				t.finish(ctx)
				return errEOF
			}
			if l.tooLong {
				t.p.Textf("the line is too long (at most %d bytes)", maxLine)
				continue
			}
			line = l.text
		case <-t.p.Ended():
			return nil // kicked: the printer said why; back to the menu
		case <-ctx.Done():
			t.finish(ctx)
			return ctx.Err()
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		cmd, err := ParseCommand(line)
		switch {
		case errors.Is(err, ErrHelp):
			t.p.Textf("%s", Help)
			continue
		case errors.Is(err, ErrQuit):
			t.finish(ctx)
			return ErrQuit
		case err != nil:
			t.p.Textf("%v", err)
			t.p.Textf("%s", Help)
			continue
		}
		if cmd.logout {
			r := t.c.Do(ctx, cmd) // after everything typed before it
			t.p.Result(r)
			if r.OK() || errors.Is(r.Err, ErrNotLoggedIn) {
				return nil
			}
			continue
		}
		t.c.Submit(cmd, t.p.Result)
	}
}

// finish sends what is queued (briefly, if the connection is down) and
// acknowledges what was shown.
func (t *Terminal) finish(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := t.c.Drain(ctx); err != nil {
		t.p.Textf("*** %v", err)
	}
	t.c.Finish(ctx)
}
