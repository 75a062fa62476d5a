package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Report is the outcome of a run: what was configured, how fast and how late
// messages arrived in the measured window, and the delivery checks. The
// connection workloads (idle, login-storm, resume-storm) fill in Idle or
// Storm instead of the message figures.
type Report struct {
	Workload string   `json:"workload"`
	Mode     Mode     `json:"mode"`
	Rate     float64  `json:"rate,omitempty"`    // open loop: target messages per second
	Pairs    int      `json:"pairs,omitempty"`   // one-to-one
	Groups   int      `json:"groups,omitempty"`  // group
	Members  int      `json:"members,omitempty"` // group: per group, senders included
	Senders  int      `json:"senders,omitempty"` // group: per group
	Addrs    []string `json:"addrs"`
	// The local addresses connections were made from, round-robin; empty:
	// the system's choice.
	SourceAddrs []string `json:"source_addrs,omitempty"`
	RunID       string   `json:"run_id"`
	WarmupS     float64  `json:"warmup_s"`
	DurationS   float64  `json:"duration_s"` // the measured window
	SetupS      float64  `json:"setup_s"`    // before the clock started: registering and logging in the users, making the groups
	// Group: the part of SetupS that made the groups (create and join).
	SetupGroupsS float64 `json:"setup_groups_s,omitempty"`
	DrainS       float64 `json:"drain_s"` // waiting for what was outstanding when sending stopped

	// Sent in the measured window / its length (group: group messages).
	SentPerSec float64 `json:"sent_per_s"`
	// Arrived in the measured window / its length (group: deliveries,
	// message x recipient).
	DeliveredPerSec float64 `json:"delivered_per_s"`
	// CPU this process used while sending (warmup and measured window), in
	// cores: 1 is one core busy; -1 where it cannot be read. Near the
	// machine's core count, the load tool itself is the bottleneck.
	ClientCPU float64 `json:"client_cpu_cores"`
	// The server processes' CPU in the measured window (--server-pids):
	// per delivered message (group: per delivery).
	ServerCPU *ServerCPU `json:"server_cpu,omitempty"`

	Result
	FinalAckErrors int64 `json:"final_ack_errors"` // receivers whose last ack was not confirmed
	FloodLimited   bool  `json:"flood_limited"`    // some sends got errno 109
	// Without --reconnect: connections that broke during the run (each
	// fails it).
	ConnsLost int64 `json:"conns_lost,omitempty"`
	// --reconnect: sessions kept through lost connections (the fields are
	// part of the JSON object itself; absent without --reconnect).
	*ReconnectReport
	Stopped string `json:"stopped,omitempty"`
	OK      bool   `json:"ok"` // nothing lost, duplicated or reordered (idle: no failed login or ping; storms: no failed login)

	Idle  *IdleReport  `json:"-"` // the idle workload
	Storm *StormReport `json:"-"` // login-storm and resume-storm
}

// Problems lists what failed the checks, empty for a clean run.
func (r *Report) Problems() []string {
	switch {
	case r.Idle != nil:
		return r.Idle.Problems()
	case r.Storm != nil:
		return r.Storm.Problems()
	}
	var p []string
	add := func(n int64, what string) {
		if n > 0 {
			p = append(p, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(r.Lost, "lost")
	add(r.Duplicates, "duplicated")
	add(r.Reordered, "reordered")
	add(r.SeqErrors, "seq errors")
	add(r.Unexpected, "unexpected")
	add(r.Foreign, "foreign")
	add(r.GivenUp, "given up")
	add(r.ConnsLost, "connections lost (see --reconnect)")
	if r.ReconnectReport != nil {
		// Every message must be settled: nothing left unanswered when
		// the drain ended.
		add(r.Unanswered, "unanswered (never acknowledged by the end of the drain)")
	}
	return p
}

// connHead is what the JSON report of a connection workload has besides
// its own figures.
type connHead struct {
	Workload    string   `json:"workload"`
	Addrs       []string `json:"addrs"`
	SourceAddrs []string `json:"source_addrs,omitempty"`
	RunID       string   `json:"run_id"`
	Stopped     string   `json:"stopped,omitempty"`
	OK          bool     `json:"ok"`
}

// WriteJSON writes the report as one JSON object (a connection workload's
// without the message figures).
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	head := connHead{Workload: r.Workload, Addrs: r.Addrs, SourceAddrs: r.SourceAddrs, RunID: r.RunID,
		Stopped: r.Stopped, OK: r.OK}
	switch {
	case r.Idle != nil:
		return enc.Encode(struct {
			connHead
			*IdleReport
		}{head, r.Idle})
	case r.Storm != nil:
		return enc.Encode(struct {
			connHead
			*StormReport
		}{head, r.Storm})
	}
	return enc.Encode(r)
}

// WriteText writes the report as a table.
func (r *Report) WriteText(w io.Writer) error {
	switch {
	case r.Idle != nil:
		return r.writeIdleText(w)
	case r.Storm != nil:
		return r.writeStormText(w)
	}
	mode := "closed loop"
	if r.Mode == Open {
		mode = fmt.Sprintf("open loop at %g msg/s", r.Rate)
	}
	group := r.Workload == WorkloadGroup
	shape := fmt.Sprintf("%d pairs", r.Pairs)
	if group {
		shape = fmt.Sprintf("%d group(s) x %d members, %d sender(s) each", r.Groups, r.Members, r.Senders)
	}
	fmt.Fprintf(w, "natter bench: %s, %s, %s, %s measured after %s warmup (run %s, %s)\n",
		r.Workload, mode, shape, secs(r.DurationS), secs(r.WarmupS), r.RunID, r.where())
	row := rowWriter(w)
	if group {
		row("setup", fmt.Sprintf("%.2f s", r.SetupS), fmt.Sprintf(
			"%d users registered and logged in (%.2f s), %d group(s) created and joined (%.2f s)",
			r.Groups*r.Members, r.SetupS-r.SetupGroupsS, r.Groups, r.SetupGroupsS))
		row("sent", fmt.Sprint(r.Sent), fmt.Sprintf("group messages, %.1f/s measured", r.SentPerSec))
		row("acknowledged", fmt.Sprint(r.Acked), "")
		row("deliveries", fmt.Sprint(r.Delivered), fmt.Sprintf("message x recipient, %.1f/s measured", r.DeliveredPerSec))
	} else {
		row("setup", fmt.Sprintf("%.2f s", r.SetupS), fmt.Sprintf("%d users registered and logged in", 2*r.Pairs))
		row("sent", fmt.Sprint(r.Sent), fmt.Sprintf("%.1f msg/s measured", r.SentPerSec))
		row("acknowledged", fmt.Sprint(r.Acked), "")
		row("delivered", fmt.Sprint(r.Delivered), fmt.Sprintf("%.1f msg/s measured", r.DeliveredPerSec))
	}
	if r.Mode == Open {
		row("skipped", fmt.Sprint(r.Skipped), "not sent: too many outstanding")
	}
	l := r.Latency
	of := fmt.Sprintf("of %d messages sent in the measured window", l.Count)
	if group {
		of = fmt.Sprintf("of each of %d deliveries of messages sent in the measured window", l.Count)
	}
	row("latency p50", ms(l.P50), of)
	row("latency p90", ms(l.P90), "")
	row("latency p99", ms(l.P99), "")
	row("latency p99.9", ms(l.P999), "")
	row("latency max", ms(l.Max), "")
	if lm := r.LastMember; lm != nil {
		row("last member p50", ms(lm.P50), fmt.Sprintf("send -> the last recipient's receipt, of %d messages", lm.Count))
		row("last member p99", ms(lm.P99), "")
		row("last member p99.9", ms(lm.P999), "")
		row("last member max", ms(lm.Max), "")
	}
	row("drain", fmt.Sprintf("%.2f s", r.DrainS), "")
	if group {
		row("lost", fmt.Sprint(r.Lost), fmt.Sprintf(
			"deliveries of acknowledged messages never received (%d messages)", r.LostMessages))
	} else {
		row("lost", fmt.Sprint(r.Lost), "acknowledged by the server, never received")
	}
	row("duplicated", fmt.Sprint(r.Duplicates), "")
	row("reordered", fmt.Sprint(r.Reordered), "")
	row("seq errors", fmt.Sprint(r.SeqErrors), "seq not increasing on a connection")
	if r.Unexpected > 0 || r.Foreign > 0 {
		row("unexpected", fmt.Sprint(r.Unexpected+r.Foreign), "answers or arrivals for messages never sent")
	}
	row("send errors", fmt.Sprint(r.SendErrors), errnoNote(r.SendErrnos))
	if r.ClientCPU >= 0 {
		row("client cpu", fmt.Sprintf("%.0f%%", 100*r.ClientCPU), "of one core, this process while sending")
	}
	writeServerCPU(row, r.ServerCPU)
	if r.Unanswered > 0 {
		row("unanswered", fmt.Sprint(r.Unanswered), "sent, no reply from the server")
	}
	if r.ReconnectReport != nil {
		r.writeReconnectText(w, row)
	}
	if r.ConnErrors > 0 || r.FinalAckErrors > 0 {
		row("other errors", fmt.Sprint(r.ConnErrors+r.FinalAckErrors), "stray error frames, broken connections, unconfirmed final acks")
	}
	if r.ConnsLost > 0 {
		row("conns lost", fmt.Sprint(r.ConnsLost), "connections that broke during the run (--reconnect keeps sessions through it)")
	}
	if r.ConnErrors > 0 {
		fmt.Fprintln(w, "  warning: connections broke or got errors outside any request during the run (see the log)")
	}
	if r.FloodLimited {
		fmt.Fprintln(w, "  note: the gateway refused frames (errno 109): start it with a higher --flood-rate/--flood-burst")
	}
	return r.writeVerdict(w)
}

// writeReconnectText writes the rows of --reconnect.
func (r *Report) writeReconnectText(w io.Writer, row func(name, value, note string)) {
	rr := r.ReconnectReport
	row("reconnects", fmt.Sprint(rr.Reconnects), fmt.Sprintf(
		"sessions back after a lost connection (%d attempts failed and were retried, %d dropped for no reply)",
		rr.ReconnectFailures, rr.ReplyTimeouts))
	row("resumed", fmt.Sprint(rr.Resumed), "logged in again with the resume token and lastseq")
	row("password relogins", fmt.Sprint(rr.PasswordRelogins), fmt.Sprintf(
		"logged in again with the password: %d resume tokens refused", rr.TokensRefused))
	o := rr.Outage
	row("outage p50", ms(o.P50), fmt.Sprintf("connection lost -> logged in again, of %d losses", o.Count))
	row("outage p99", ms(o.P99), "")
	row("outage max", ms(o.Max), "")
	if rr.DownAtEnd > 0 {
		row("down at end", fmt.Sprint(rr.DownAtEnd), "sessions not back when the run ended (counted until then)")
	}
	row("max receive gap", ms(rr.MaxReceiveGapMS), "the longest a receiver went without a message while sending")
	row("resent", fmt.Sprint(rr.Resent), fmt.Sprintf(
		"sent again after a lost connection, same cid; %d answered duplicate", rr.DuplicateReplies))
	note := "sends answered with an errno, retried with the same cid"
	if len(rr.RetriedErrnos) > 0 {
		note += " (" + errnoNote(rr.RetriedErrnos) + ")"
	}
	row("errors retried", fmt.Sprint(rr.SendErrorsRetried), note)
	row("given up", fmt.Sprint(r.GivenUp), "not acknowledged within --give-up")
	row("redelivered", fmt.Sprint(r.Redelivered), "pushes of seqs already processed, dropped by the receiver")
	row("notices", fmt.Sprint(r.Notices), "error frames about the connection (RECONNECT, gateway stopping, session expired)")
	if rr.TokensRefused > 0 {
		fmt.Fprintln(w, "  warning: the server refused resume tokens of dropped connections (password logins instead)")
	}
}

// writeVerdict writes the last lines of the text report.
func (r *Report) writeVerdict(w io.Writer) error {
	if r.Stopped != "" {
		fmt.Fprintf(w, "  stopped early: %s\n", r.Stopped)
	}
	verdict := "OK"
	if !r.OK {
		verdict = "FAILED"
		if p := r.Problems(); len(p) > 0 {
			verdict += ": " + strings.Join(p, ", ")
		}
	}
	_, err := fmt.Fprintf(w, "  result: %s\n", verdict)
	return err
}

// where names the gateways and, if chosen, the source addresses.
func (r *Report) where() string {
	s := strings.Join(r.Addrs, ",")
	switch n := len(r.SourceAddrs); {
	case n == 1:
		s += " from " + r.SourceAddrs[0]
	case n > 1:
		s += fmt.Sprintf(" from %s-%s (%d addresses)", r.SourceAddrs[0], r.SourceAddrs[n-1], n)
	}
	return s
}

// rowWriter returns a function that writes one row of a text report.
func rowWriter(w io.Writer) func(name, value, note string) {
	return func(name, value, note string) {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("  %-17s %14s   %s", name, value, note), " "))
	}
}

// bcryptNote is printed with password logins: the client cannot know the
// server's bcrypt cost.
const bcryptNote = "  note: password logins are bcrypt-bound; the server's --bcrypt-cost sets their cost " +
	"(benchmarks use 4, the default is 10)"

func (r *Report) writeIdleText(w io.Writer) error {
	ir := r.Idle
	fmt.Fprintf(w, "natter bench: idle, %d connections, a ping every %s each, held %s (run %s, %s)\n",
		ir.Conns, secs(ir.PingIntervalS), secs(ir.HeldS), r.RunID, r.where())
	row := rowWriter(w)
	row("register", fmt.Sprintf("%.2f s", ir.RegisterS), fmt.Sprintf("%d users (not measured)", ir.Conns))
	row("connect", fmt.Sprintf("%.2f s", ir.ConnectS), fmt.Sprintf(
		"%d logged in, each on a new connection, %d at a time: %.1f logins/s", ir.Established, ir.Concurrency, ir.LoginsPerSec))
	row("failed logins", fmt.Sprint(ir.FailedLogins), reasonList(ir.Failures))
	writeLatency(row, "login", ir.LoginLatency, fmt.Sprintf("LOGIN -> LOGIN_ACK, of %d logins", ir.LoginLatency.Count))
	row("connect p50", ms(ir.ConnectLatency.P50), "TCP connect")
	row("connect p99", ms(ir.ConnectLatency.P99), "")
	row("held", fmt.Sprintf("%.2f s", ir.HeldS), "")
	row("pings", fmt.Sprint(ir.Pings), fmt.Sprintf("%d answered", ir.PingsAnswered))
	row("pings failed", fmt.Sprint(ir.PingsFailed), reasonList(ir.PingFailures))
	row("pong p50", ms(ir.PongLatency.P50), "PING -> PONG")
	row("pong p99", ms(ir.PongLatency.P99), "")
	row("pong max", ms(ir.PongLatency.Max), "")
	row("connections lost", fmt.Sprint(ir.ConnsLost), "broke while idle")
	writeRSS(row, "gateway rss", ir.GatewayRSS)
	writeRSS(row, "client rss", ir.ClientRSS)
	if ir.ClientCPU >= 0 {
		row("client cpu", fmt.Sprintf("%.1f%%", 100*ir.ClientCPU), "of one core, this process while idle")
	}
	writeServerCPU(row, ir.ServerCPU)
	if ir.HeldS < ir.PingIntervalS {
		fmt.Fprintln(w, "  note: held for less than a ping interval: not every connection pinged")
	}
	fmt.Fprintln(w, bcryptNote)
	return r.writeVerdict(w)
}

func writeLatency(row func(name, value, note string), what string, l Latency, note string) {
	row(what+" p50", ms(l.P50), note)
	row(what+" p90", ms(l.P90), "")
	row(what+" p99", ms(l.P99), "")
	row(what+" p99.9", ms(l.P999), "")
	row(what+" max", ms(l.Max), "")
}

func writeRSS(row func(name, value, note string), what string, m *RSS) {
	if m == nil {
		return
	}
	note := "before connecting / connected / at the end"
	if m.PID > 0 {
		note = fmt.Sprintf("pid %d, %s", m.PID, note)
	}
	row(what, fmt.Sprintf("%.0f B/conn", m.PerConn), fmt.Sprintf("%s: %s / %s / %s", note,
		mib(m.Before), mib(m.Connected), mib(m.End)))
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func (r *Report) writeStormText(w io.Writer) error {
	sr := r.Storm
	fmt.Fprintf(w, "natter bench: %s, %d users, %d logins at once (run %s, %s)\n",
		r.Workload, sr.Users, sr.Concurrency, r.RunID, r.where())
	row := rowWriter(w)
	resume := r.Workload == WorkloadResumeStorm
	row("register", fmt.Sprintf("%.2f s", sr.RegisterS), fmt.Sprintf("%d users (not measured)", sr.Users))
	what := "password logins"
	if resume {
		row("first logins", fmt.Sprintf("%.2f s", sr.FirstLoginS), "with the password, keeping the resume tokens (not measured)")
		row("reset", fmt.Sprintf("%.2f s", sr.ResetS), "every connection reset at once, as if their gateway died")
		what = "logins with the resume token"
	}
	row("storm", fmt.Sprintf("%.2f s", sr.StormS), fmt.Sprintf("%d %s, each on a new connection: %.1f logins/s",
		sr.Logins, what, sr.LoginsPerSec))
	row("failed", fmt.Sprint(sr.Failed), reasonList(sr.Failures))
	writeLatency(row, "login", sr.Latency, fmt.Sprintf("LOGIN -> LOGIN_ACK, of %d logins", sr.Latency.Count))
	row("connect p50", ms(sr.ConnectLatency.P50), "TCP connect")
	row("connect p99", ms(sr.ConnectLatency.P99), "")
	if sr.ClientCPU >= 0 {
		row("client cpu", fmt.Sprintf("%.0f%%", 100*sr.ClientCPU), "of one core, this process during the storm")
	}
	writeServerCPU(row, sr.ServerCPU)
	if resume {
		fmt.Fprintln(w, "  note: a token login is a hash lookup in the user service, no bcrypt")
	} else {
		fmt.Fprintln(w, bcryptNote)
	}
	return r.writeVerdict(w)
}

func secs(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

func ms(v float64) string { return fmt.Sprintf("%.3f ms", v) }

func errnoNote(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("errno %s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// progressLine formats one progress line from two snapshots a second apart;
// cores is this process's CPU in between (-1: unknown).
func progressLine(elapsed time.Duration, phase string, prev, cur Progress, dt time.Duration, cores float64) string {
	rate := func(a, b int64) float64 { return float64(b-a) / dt.Seconds() }
	cpu := ""
	if cores >= 0 {
		cpu = fmt.Sprintf("  cpu %3.0f%%", 100*cores)
	}
	return fmt.Sprintf("bench %4ds %-8s sent %8.0f/s  delivered %8.0f/s  p99 %8.3f ms  in flight %d%s",
		int(elapsed.Round(time.Second)/time.Second), phase, rate(prev.Sent, cur.Sent),
		rate(prev.Delivered, cur.Delivered), float64(cur.P99.Microseconds())/1000, cur.Pending, cpu)
}
