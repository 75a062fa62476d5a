package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/tools/internal/chatclient"
	"github.com/natter-chat/natter/tools/internal/clienttls"
)

const chatDescription = `Without --user or --register: the original client's menu (1. login,
2. register, 3. quit), then commands, one per line (type help for the list):

   chat:friendid:message      addfriend:friendid      removefriend:friendid
   creategroup:name:desc      addgroup:groupid        leavegroup:groupid
   groupchat:groupid:message  friends  groups  members:groupid
   loginout                   quit

Incoming chats print as "<time> [<id>]<name> said: <msg>" (group chats with
"群消息[<groupid>]:" in front). Everything shown is acknowledged, so it is
never shown again, and nothing is skipped. When the connection drops the
client says so, reconnects with backoff (to the next --addr, or wherever
nginx sends it), resumes the session with its resume token and carries on
after the last message shown; what you type meanwhile is sent once the
session is back, exactly once.

For scripts: --user N logs in without the menu (password from
NATTER_PASSWORD or --password-file, else asked for without echo on a
terminal); --send runs commands (repeat it) and exits when they are answered;
--json prints every event (message, presence, result, connection, ...) as a
JSON line and keeps running until interrupted; --register NAME creates an
account and prints its id (--id-only: the id alone, for id=$(natter chat
--register NAME --id-only); --json: a JSON line). A gateway that refuses or
is not there yet, or answers "retry", is tried again with the same backoff
as after a lost connection, for up to --connect-timeout.`

func chatCommand() *cli.Command {
	d := chatclient.DefaultConfig()
	return &cli.Command{
		Name:        "chat",
		Usage:       "the terminal chat client (the original client's menu and commands, with reconnection)",
		Description: chatDescription,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "addr", Value: strings.Join(d.Addrs, ","), EnvVars: []string{"NATTER_CHAT_ADDR"},
				Usage: "gateway address(es), comma-separated; after a lost connection the next one is tried (with --tls: TLS listeners)"},
			&cli.Int64Flag{Name: "user", EnvVars: []string{"NATTER_CHAT_USER"},
				Usage: "log in as this user id without the menu"},
			&cli.StringFlag{Name: "password-file", EnvVars: []string{"NATTER_CHAT_PASSWORD_FILE"},
				Usage: "read the password from this file (its first line); else NATTER_PASSWORD, else asked for"},
			&cli.StringFlag{Name: "register", EnvVars: []string{"NATTER_CHAT_REGISTER"},
				Usage: "register this user name, print the new id and exit"},
			&cli.BoolFlag{Name: "id-only", EnvVars: []string{"NATTER_CHAT_ID_ONLY"},
				Usage: "with --register: print the new id alone (a number and a newline), for scripts"},
			&cli.DurationFlag{Name: "connect-timeout", Value: 30 * time.Second, EnvVars: []string{"NATTER_CHAT_CONNECT_TIMEOUT"},
				Usage: "with --user or --register: how long to keep trying to reach a gateway and log in (or register), with backoff, before giving up"},
			&cli.StringSliceFlag{Name: "send", EnvVars: []string{"NATTER_CHAT_SEND"},
				Usage: "run this command after login (repeatable, e.g. --send chat:2:hello); then exit unless --json"},
			&cli.BoolFlag{Name: "json", EnvVars: []string{"NATTER_CHAT_JSON"},
				Usage: "print events as JSON lines and run until interrupted (needs --user or --register)"},
			&cli.DurationFlag{Name: "timeout", Value: d.Timeout, EnvVars: []string{"NATTER_CHAT_TIMEOUT"},
				Usage: "how long a request waits for its answer before the connection is replaced"},
			&cli.DurationFlag{Name: "max-backoff", Value: d.MaxBackoff, EnvVars: []string{"NATTER_CHAT_MAX_BACKOFF"},
				Usage: "the longest wait between reconnection attempts"},
			&cli.StringFlag{Name: cliflag.LogLevel, Value: "warn", EnvVars: []string{"NATTER_CHAT_LOG_LEVEL"},
				Usage: "log level (to stderr): debug, info, warn or error"},
			&cli.StringFlag{Name: cliflag.LogFormat, Value: "text", EnvVars: []string{"NATTER_CHAT_LOG_FORMAT"},
				Usage: "log format: text or json"},
		}, clienttls.Flags("NATTER_CHAT")...),
		Action: runChat,
	}
}

func runChat(c *cli.Context) error {
	log, err := cliflag.Logger(c)
	if err != nil {
		return err
	}
	cfg := chatclient.DefaultConfig()
	cfg.Addrs = nil
	for _, a := range strings.Split(c.String("addr"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Addrs = append(cfg.Addrs, a)
		}
	}
	cfg.Timeout, cfg.MaxBackoff = c.Duration("timeout"), c.Duration("max-backoff")
	if cfg.TLS, err = clienttls.FromFlags(c); err != nil {
		return err
	}
	switch {
	case len(cfg.Addrs) == 0:
		return errors.New("--addr: no address")
	case cfg.Timeout <= 0 || cfg.MaxBackoff < cfg.MinBackoff:
		return fmt.Errorf("--timeout must be positive and --max-backoff at least %v", cfg.MinBackoff)
	}
	user, register, sends, jsonOut := c.Int64("user"), c.String("register"), c.StringSlice("send"), c.Bool("json")
	idOnly, connectTimeout := c.Bool("id-only"), c.Duration("connect-timeout")
	scripted := user != 0 || register != ""
	switch {
	case !scripted && (jsonOut || len(sends) > 0):
		return errors.New("--json and --send need --user (or --register)")
	case idOnly && (register == "" || jsonOut):
		return errors.New("--id-only needs --register (and not --json)")
	case connectTimeout <= 0:
		return errors.New("--connect-timeout must be positive")
	}

	setEcho, tty := chatclient.EchoControl(int(os.Stdin.Fd()))
	var pw string
	if scripted {
		// Before the signal handler: Ctrl+C at the prompt ends the program.
		if pw, err = password(c.String("password-file"), tty, setEcho); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := os.Stdout
	if idOnly { // standard output is the id alone; notices go to stderr
		out = os.Stderr
	}
	p := chatclient.NewPrinter(out, jsonOut)
	cl := chatclient.New(cfg, p, log)
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); cl.Run(runCtx) }()
	defer func() { cancelRun(); <-done }()

	if !scripted {
		return chatclient.NewTerminal(cl, p, os.Stdin, setEcho).Run(ctx)
	}
	if register != "" {
		var id int64
		err := cl.Retrying(ctx, connectTimeout, func(ctx context.Context) (err error) {
			id, err = cl.Register(ctx, register, pw)
			return err
		})
		if err != nil {
			return fmt.Errorf("register %q: %w", register, err)
		}
		if idOnly {
			fmt.Println(id)
			return nil
		}
		p.Registered(id, register)
		return nil
	}
	err = cl.Retrying(ctx, connectTimeout, func(ctx context.Context) error {
		_, err := cl.Login(ctx, user, pw) // the printer shows the session
		return err
	})
	if err != nil {
		return fmt.Errorf("login %d: %w", user, err)
	}
	failed := 0
	for _, line := range sends {
		cmd, err := chatclient.ParseCommand(line)
		if err != nil {
			return fmt.Errorf("--send %q: %w", line, err)
		}
		r := cl.Do(ctx, cmd)
		p.Result(r)
		if !r.OK() {
			failed++
		}
	}
	if len(sends) > 0 && !jsonOut {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		cl.Finish(fctx)
		return sendsFailed(failed, len(sends))
	}
	t := chatclient.NewTerminal(cl, p, os.Stdin, setEcho)
	if jsonOut {
		// Scripts often give no input: keep running until interrupted,
		// taking commands from standard input while it lasts.
		t.KeepOnEOF()
	}
	err = t.Chat(ctx)
	if failed > 0 {
		return sendsFailed(failed, len(sends))
	}
	if err != nil && !errors.Is(err, chatclient.ErrQuit) && !chatclient.IsEOF(err) && ctx.Err() == nil {
		return err
	}
	return nil
}

// sendsFailed is the exit for --send commands of which failed failed.
func sendsFailed(failed, of int) error {
	if failed == 0 {
		return nil
	}
	return cli.Exit(fmt.Sprintf("natter chat: %d of %d commands failed", failed, of), 1)
}

// password reads the password from file, NATTER_PASSWORD, or the terminal
// (without echo); it is never taken from a flag, which others could see.
func password(file string, tty bool, setEcho func(bool)) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--password-file: %w", err)
		}
		pw, _, _ := strings.Cut(string(b), "\n")
		return strings.TrimRight(pw, "\r"), nil
	}
	if pw, ok := os.LookupEnv("NATTER_PASSWORD"); ok {
		return pw, nil
	}
	if !tty {
		return "", errors.New("no password: set NATTER_PASSWORD or --password-file")
	}
	fmt.Fprint(os.Stderr, "password:")
	setEcho(false)
	defer setEcho(true)
	// Ctrl+C at the prompt ends the program with the echo back on.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer func() { signal.Stop(sig); close(sig) }()
	go func() {
		if _, ok := <-sig; ok {
			setEcho(true)
			fmt.Fprintln(os.Stderr)
			os.Exit(130)
		}
	}()
	// Byte by byte: what follows the line stays for the command reader.
	var pw []byte
	b := make([]byte, 1)
	for {
		n, err := os.Stdin.Read(b)
		if n == 1 && b[0] != '\n' {
			pw = append(pw, b[0])
			continue
		}
		fmt.Fprintln(os.Stderr)
		if n == 0 && err != nil && len(pw) == 0 {
			return "", fmt.Errorf("read password: %w", err)
		}
		return strings.TrimRight(string(pw), "\r"), nil
	}
}
