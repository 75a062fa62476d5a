package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/tools/internal/clienttls"
	"github.com/natter-chat/natter/tools/internal/loadgen"
)

const benchDescription = `Registers and logs in its own users (names b<run id>-...), then drives the
given gateways in the full dialect and checks every message: nothing the
server acknowledged may be lost, duplicated or reordered, and each receiving
connection's seq values must increase. Exits non-zero when a check fails
(the connection workloads: when a login or a ping fails).

Workload one-to-one: --pairs sender/receiver pairs, each on two connections.
--mode closed (default): a sender sends its next message once its receiver got
the previous one. --mode open --rate R: R messages/s in total on a schedule,
whatever arrives; a message due while --max-outstanding are in flight for its
pair is skipped (counted, not lost).

Workload group: --groups G groups of --members K users, each on its own
connection (G x K connections and logins, all before the clock starts; the
first member creates the group, the others join). The first --senders S
members of each group send, open loop, --rate R group messages/s in total
(default 20); every other member must receive each message exactly once and
in order. Reported: deliveries (message x recipient) per second, the latency
of each delivery and the last-member latency of each message (send -> the
last recipient's receipt). With thousands of connections, raise the file
limit (ulimit -n) and keep an eye on "client cpu": near the machine's cores,
the load tool is the bottleneck.

Workload idle: --conns C users are registered (not measured), then each logs
in on its own connection, --setup-concurrency at a time (measured: logins/s,
login latency, failed logins), and every connection only pings (PING, every
--ping-interval, spread evenly) for --duration. Reported: connections
established, pings answered and failed, connections lost, and the resident
memory (Linux) of this process and, with --gateway-pid, of the gateway
process: before connecting, once connected and at the end, and per
connection. The tool holds a connection in about a kilobyte (no goroutine of
its own; a few workers send the pings due), so one machine can hold 100,000:
raise ulimit -n on both sides; beyond ~28,000 connections per source address
see --source-addrs.

Workload login-storm: --users N users are registered (not measured), then
each logs in with its password on a new connection, --concurrency at a time,
as fast as the server takes them: logins/s and login latency. Password
logins are bcrypt-bound: the server's --bcrypt-cost sets their cost.

Workload resume-storm: as login-storm, but each user first logs in with its
password (not measured) and keeps the resume token of its LOGIN_ACK; then
every connection is reset at once (as if their gateway died) and all log in
again with {"msgid":1,"id":N,"token":T}: reconnects/s and their latency.
Any failed login fails login-storm and resume-storm. Their connections stay
open until the storm ends.

Faults (--reconnect, one-to-one and group): without it a connection lost
during the run fails it. With it every simulated user keeps its session, as
a real client does: after a lost connection (EOF, reset, an error frame
after which the gateway closes, no reply within --reply-timeout) it
reconnects with jittered backoff (100 ms doubling to 2 s) to the next
--addr, round-robin, and logs in with its resume token and lastseq (the last
seq it processed); a refused token falls back to the password, counted as
password_relogins and warned about. Each sender keeps an outbox of the
messages not acknowledged yet and sends them one at a time, in order: after
a lost connection it resends them with the same cid (the server answers a
stored cid with duplicate:true, which counts as acknowledged), an errno
answer (110 while a service restarts) is retried after a short backoff
(send_errors_retried), and a message not acknowledged within --give-up is
given up (given_up, fails the run). Receivers drop seqs they already
processed; what the checks count is what a client would show. Reported:
reconnects, resumed, password_relogins, the outages (connection lost ->
logged in again: count, p50, p99, max) and the longest time a receiver went
without a message while the senders sent. Unanswered messages at the end
of the drain fail the run too: give the drain time (--drain 30s) when a
fault may still be on at the end.

SIGINT or SIGTERM stops sending at once; the drain (up to --drain), the
checks and the final acks still run and the report is printed (a second
signal ends the process). --out FILE also writes the JSON report to FILE.

Source addresses: one source address has ~28,000 ephemeral ports (Linux:
/proc/sys/net/ipv4/ip_local_port_range). With --source-addrs auto (default)
and IPv4 loopback gateways, a run that needs more connections is spread over
127.0.0.1, 127.0.0.2, ...; or give the addresses (127.0.0.1-127.0.0.8, or a
comma list), or "system" for the system's choice.

WebSocket (--transport ws, or ws://host:port/ws addresses): every workload
runs over the gateways' WebSocket endpoints instead, one frame per text
message, with the same checks; natter serve listens for WebSocket on
127.0.0.1:6080 (--addr 127.0.0.1:6080 --transport ws), a natter-gateway with
--ws-listen. A WebSocket connection costs the tool a goroutine more than a
TCP one (it reads ahead), which matters only for large idle runs.

Server CPU (--server-pids, Linux): the CPU time (user + system, every
thread) of the given processes is read from /proc/PID/stat when the
measured window starts and when it ends, and reported in all, per process
and per delivered message (group: per delivery; storms: per login). It is
steadier than msg/s on a shared machine: compare builds by it.

Start the server for benchmarks with a low bcrypt cost and a flood limit above
the per-connection rate (the gateway's default, 200 frames/s with a burst of
400, refuses the excess with errno 109, which shows up as send errors):

   natter serve --bcrypt-cost 4 --flood-rate 100000 --flood-burst 100000

Latency is the time from send to receipt on this process's clock, for
messages sent in the measured window (after --warmup).`

// writeReportFile writes the JSON report to path.
func writeReportFile(path string, r *loadgen.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report file: %w", err)
	}
	if err := r.WriteJSON(f); err != nil {
		f.Close()
		return fmt.Errorf("report file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("report file %s: %w", path, err)
	}
	return nil
}

func benchCommand() *cli.Command {
	d := loadgen.DefaultConfig()
	flags := []cli.Flag{
		&cli.StringFlag{Name: "addr", Value: strings.Join(d.Addrs, ","), EnvVars: []string{"NATTER_BENCH_ADDR"},
			Usage: "gateway address(es), comma-separated; connections are spread over them round-robin; " +
				"ws://host:port/ws is a WebSocket endpoint"},
		&cli.StringFlag{Name: "transport", Value: loadgen.TransportTCP, EnvVars: []string{"NATTER_BENCH_TRANSPORT"},
			Usage: "tcp, or ws: connect to the gateways' WebSocket endpoints (--addr host:port means ws://host:port/ws; " +
				"the gateways need --ws-listen)"},
		&cli.StringFlag{Name: "workload", Value: d.Workload, EnvVars: []string{"NATTER_BENCH_WORKLOAD"},
			Usage: "what to run: " + strings.Join(loadgen.Workloads, ", ")},
		&cli.IntFlag{Name: "pairs", Value: d.Pairs, EnvVars: []string{"NATTER_BENCH_PAIRS"},
			Usage: "one-to-one: sender/receiver pairs (two users and two connections each)"},
		&cli.IntFlag{Name: "groups", Value: d.Groups, EnvVars: []string{"NATTER_BENCH_GROUPS"},
			Usage: "group: groups"},
		&cli.IntFlag{Name: "members", Value: d.Members, EnvVars: []string{"NATTER_BENCH_MEMBERS"},
			Usage: "group: members per group, senders included (one user and one connection each)"},
		&cli.IntFlag{Name: "senders", Value: d.Senders, EnvVars: []string{"NATTER_BENCH_SENDERS"},
			Usage: "group: members of each group that send"},
		&cli.StringFlag{Name: "mode", Value: string(d.Mode), EnvVars: []string{"NATTER_BENCH_MODE"},
			Usage: "closed (send the next message once the previous one arrived) or open (a fixed --rate); " +
				"empty: closed for one-to-one, open for group (which is open loop only)"},
		&cli.Float64Flag{Name: "rate", EnvVars: []string{"NATTER_BENCH_RATE"},
			Usage: "open mode: messages per second in total, spread over the pairs or group senders (group: 0 is 20)"},
		&cli.IntFlag{Name: "max-outstanding", Value: d.MaxOutstanding, EnvVars: []string{"NATTER_BENCH_MAX_OUTSTANDING"},
			Usage: "open mode: messages in flight per pair or group sender before scheduled ones are skipped"},
		&cli.IntFlag{Name: "msg-size", Value: d.MsgSize, EnvVars: []string{"NATTER_BENCH_MSG_SIZE"},
			Usage: "bytes of message text per chat"},
		&cli.IntFlag{Name: "conns", Value: d.Conns, EnvVars: []string{"NATTER_BENCH_CONNS"},
			Usage: "idle: logged-in connections (one user each) held for --duration"},
		&cli.DurationFlag{Name: "ping-interval", Value: d.PingInterval, EnvVars: []string{"NATTER_BENCH_PING_INTERVAL"},
			Usage: "idle: each connection pings this often (spread evenly over the connections)"},
		&cli.IntFlag{Name: "gateway-pid", EnvVars: []string{"NATTER_BENCH_GATEWAY_PID"},
			Usage: "idle: the gateway's process id (on this machine); its resident memory is reported (Linux)"},
		&cli.StringFlag{Name: "server-pids", EnvVars: []string{"NATTER_BENCH_SERVER_PIDS"},
			Usage: "server process ids on this machine, comma-separated: their CPU time (/proc/PID/stat, Linux) in the " +
				"measured window is reported in all and per delivered message (group: per delivery; storms: per login)"},
		&cli.IntFlag{Name: "users", Value: d.Users, EnvVars: []string{"NATTER_BENCH_USERS"},
			Usage: "login-storm, resume-storm: users, each logging in on a new connection"},
		&cli.IntFlag{Name: "concurrency", Value: d.Concurrency, EnvVars: []string{"NATTER_BENCH_CONCURRENCY"},
			Usage: "login-storm, resume-storm: logins in flight at once"},
		&cli.StringFlag{Name: "source-addrs", Value: d.Sources.String(), EnvVars: []string{"NATTER_BENCH_SOURCE_ADDRS"},
			Usage: "local addresses to connect from, round-robin: auto (more 127.0.0.x when loopback gateways need " +
				"more connections than one address has ports), system, or a list (127.0.0.1-127.0.0.8,127.0.1.1)"},
		&cli.DurationFlag{Name: "warmup", Value: d.Warmup, EnvVars: []string{"NATTER_BENCH_WARMUP"},
			Usage: "send for this long first; checked, not measured"},
		&cli.DurationFlag{Name: "duration", Value: d.Duration, EnvVars: []string{"NATTER_BENCH_DURATION"},
			Usage: "the measured window, after the warmup (idle: how long the connections are held)"},
		&cli.DurationFlag{Name: "drain", Value: d.Drain, EnvVars: []string{"NATTER_BENCH_DRAIN"},
			Usage: "after sending stops, wait this long at most for messages in flight (what is still missing then is lost)"},
		&cli.DurationFlag{Name: "timeout", EnvVars: []string{"NATTER_BENCH_TIMEOUT"},
			Usage: "hard stop for the whole run, setup included (0: warmup + duration + drain + 2m)"},
		&cli.StringFlag{Name: "password", Value: d.Password, EnvVars: []string{"NATTER_BENCH_PASSWORD"},
			Usage: "password of the users the bench registers"},
		&cli.DurationFlag{Name: "ack-interval", Value: d.AckInterval, EnvVars: []string{"NATTER_BENCH_ACK_INTERVAL"},
			Usage: "receivers acknowledge what they got this often, cumulatively (0: 10ms one-to-one, 100ms group)"},
		&cli.IntFlag{Name: "setup-concurrency", Value: d.SetupConcurrency, EnvVars: []string{"NATTER_BENCH_SETUP_CONCURRENCY"},
			Usage: "registrations and logins in flight at once before the clock starts (bcrypt is slow); " +
				"idle: also its measured logins"},
		&cli.BoolFlag{Name: "reconnect", EnvVars: []string{"NATTER_BENCH_RECONNECT"},
			Usage: "one-to-one, group: keep every user's session through lost connections (log in again with the " +
				"resume token, resend unacknowledged messages with the same cid) instead of failing the run"},
		&cli.DurationFlag{Name: "give-up", Value: d.GiveUp, EnvVars: []string{"NATTER_BENCH_GIVE_UP"},
			Usage: "--reconnect: give a message up (fails the run) when not acknowledged this long after it was first sent"},
		&cli.DurationFlag{Name: "reply-timeout", Value: d.ReplyTimeout, EnvVars: []string{"NATTER_BENCH_REPLY_TIMEOUT"},
			Usage: "--reconnect: a request unanswered this long counts as a lost connection"},
		&cli.BoolFlag{Name: "json", EnvVars: []string{"NATTER_BENCH_JSON"},
			Usage: "print the report as one JSON object instead of a table"},
		&cli.StringFlag{Name: "out", EnvVars: []string{"NATTER_BENCH_OUT"},
			Usage: "also write the report as one JSON object to this file"},
		&cli.BoolFlag{Name: "quiet", EnvVars: []string{"NATTER_BENCH_QUIET"},
			Usage: "no progress line on stderr every second"},
	}
	flags = append(flags, clienttls.Flags("NATTER_BENCH")...)
	flags = append(flags, cliflag.LogFlags()...)
	return &cli.Command{
		Name:        "bench",
		Usage:       "load-test a natter deployment and check that no message is lost, duplicated or reordered",
		Description: benchDescription,
		Flags:       flags,
		Action: func(c *cli.Context) error {
			ctx, proc, err := cliflag.StartProcess(c)
			if err != nil {
				return err
			}
			defer proc.Stop()
			log := proc.Log()
			sources, err := loadgen.ParseSources(c.String("source-addrs"))
			if err != nil {
				return err
			}
			pids, err := loadgen.ParsePIDs(c.String("server-pids"))
			if err != nil {
				return err
			}
			cfg := loadgen.Config{
				Transport:        c.String("transport"),
				Workload:         c.String("workload"),
				Password:         c.String("password"),
				Pairs:            c.Int("pairs"),
				Groups:           c.Int("groups"),
				Members:          c.Int("members"),
				Senders:          c.Int("senders"),
				Mode:             loadgen.Mode(c.String("mode")),
				Rate:             c.Float64("rate"),
				MaxOutstanding:   c.Int("max-outstanding"),
				MsgSize:          c.Int("msg-size"),
				Warmup:           c.Duration("warmup"),
				Duration:         c.Duration("duration"),
				Drain:            c.Duration("drain"),
				Timeout:          c.Duration("timeout"),
				AckInterval:      c.Duration("ack-interval"),
				SetupConcurrency: c.Int("setup-concurrency"),
				Conns:            c.Int("conns"),
				PingInterval:     c.Duration("ping-interval"),
				GatewayPID:       c.Int("gateway-pid"),
				ServerPIDs:       pids,
				Users:            c.Int("users"),
				Concurrency:      c.Int("concurrency"),
				Sources:          sources,
				Reconnect:        c.Bool("reconnect"),
				GiveUp:           c.Duration("give-up"),
				ReplyTimeout:     c.Duration("reply-timeout"),
			}
			for _, a := range strings.Split(c.String("addr"), ",") {
				if a = strings.TrimSpace(a); a != "" {
					cfg.Addrs = append(cfg.Addrs, a)
				}
			}
			if cfg.TLS, err = clienttls.FromFlags(c); err != nil {
				return err
			}
			if !c.Bool("quiet") {
				cfg.Progress = os.Stderr
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			// The first signal stops the run (which still drains and
			// reports); a second one ends the process.
			context.AfterFunc(ctx, proc.StopSignals)
			report, runErr := loadgen.Run(ctx, cfg, log)
			if report != nil {
				write := report.WriteText
				if c.Bool("json") {
					write = report.WriteJSON
				}
				if err := write(os.Stdout); err != nil {
					return err
				}
				if out := c.String("out"); out != "" {
					if err := writeReportFile(out, report); err != nil {
						return err
					}
				}
			}
			if runErr != nil {
				return runErr
			}
			if !report.OK {
				what := "delivery check"
				if report.Idle != nil || report.Storm != nil {
					what = report.Workload
				}
				return cli.Exit(fmt.Sprintf("natter bench: %s failed: %s",
					what, strings.Join(report.Problems(), ", ")), 1)
			}
			return nil
		},
	}
}
