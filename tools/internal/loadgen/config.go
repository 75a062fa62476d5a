package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Workload names.
const (
	WorkloadOneToOne    = "one-to-one"
	WorkloadGroup       = "group"
	WorkloadIdle        = "idle"
	WorkloadLoginStorm  = "login-storm"
	WorkloadResumeStorm = "resume-storm"
)

// Workloads lists the workload names, for help texts.
var Workloads = []string{WorkloadOneToOne, WorkloadGroup, WorkloadIdle, WorkloadLoginStorm, WorkloadResumeStorm}

// Workload defaults that Config leaves at zero.
const (
	DefaultGroupRate        = 20                     // group messages per second in total
	defaultAckInterval      = 10 * time.Millisecond  // one-to-one receivers
	defaultGroupAckInterval = 100 * time.Millisecond // group members: thousands of them, each acks at most this often
	maxGroupMembers         = 5000                   // the server's limit (docs/protocol.md)
	// The connection workloads' setup (registrations, logins) is bounded by
	// 2 minutes plus this per request, unless Config.Timeout says otherwise.
	setupAllowancePerRequest = 5 * time.Millisecond
)

// Mode is how senders pace themselves.
type Mode string

// Modes.
const (
	// Closed: a sender sends its next message once the previous one arrived
	// (or failed). Measures the system's capacity at a fixed concurrency.
	Closed Mode = "closed"
	// Open: messages go out on a schedule at a fixed total rate whatever
	// arrives; what cannot be sent because too much is outstanding is
	// skipped.
	Open Mode = "open"
)

// Transports: how the bench reaches the gateways.
const (
	TransportTCP = "tcp" // JSON frames ended by '\n'
	TransportWS  = "ws"  // WebSocket: one frame per text message (gateway/wsconn)
)

// Config configures a run.
type Config struct {
	// Addrs are the gateways; connections are spread over them
	// round-robin. host:port is a TCP address (a WebSocket endpoint with
	// Transport "ws"); ws://host:port/ws and wss://... are WebSocket
	// endpoints whatever Transport says.
	Addrs     []string
	Transport string // "tcp" (or empty) or "ws"
	// TLS, when not nil, makes every connection a TLS one: host:port is a
	// gateway's --tls-listen, ws:// URLs become wss://, and wss:// URLs
	// use it too (a private CA).
	TLS      *tls.Config
	Workload string
	Password string // for every simulated user

	Pairs          int     // one-to-one: sender/receiver pairs
	Groups         int     // group: groups
	Members        int     // group: members per group, senders included
	Senders        int     // group: members of each group that send
	Mode           Mode    // closed or open loop; "": the workload's (one-to-one closed, group open)
	Rate           float64 // open loop: messages per second in total; group: 0 is DefaultGroupRate
	MaxOutstanding int     // open loop: per pair or group sender; beyond it scheduled messages are skipped
	MsgSize        int     // bytes of "msg" text per chat

	Warmup   time.Duration // sending, checked, not measured
	Duration time.Duration // the measured window
	Drain    time.Duration // after sending stops, wait this long at most for what is outstanding
	Timeout  time.Duration // hard stop for the whole run, setup included; 0: derived

	AckInterval      time.Duration // receivers acknowledge what they got this often; 0: 10ms one-to-one, 100ms group
	SetupConcurrency int           // registrations and logins at once (idle: also the logins it measures)

	Conns        int           // idle: logged-in connections held for Duration
	PingInterval time.Duration // idle: each connection pings this often
	GatewayPID   int           // idle: the gateway process whose memory is read (Linux /proc); 0: none

	// ServerPIDs are the server processes (on this machine) whose CPU time
	// is read from /proc/PID/stat before and after the measured window and
	// reported per delivered message (group: per delivery; storms: per
	// login).
	ServerPIDs []int

	Users       int // login-storm, resume-storm: users, each logging in on a new connection
	Concurrency int // login-storm, resume-storm: logins in flight at once

	Sources Sources // the local addresses connections are made from

	// Reconnect (one-to-one, group): every simulated user keeps its session
	// through lost connections - it logs in again (resume token, lastseq)
	// on the next address, and its sender resends what was not
	// acknowledged with the same cid (see reconnect.go). Off: a lost
	// connection fails the run.
	Reconnect    bool
	GiveUp       time.Duration // reconnect: a message not acknowledged this long after it was first sent is given up (fails the run)
	ReplyTimeout time.Duration // reconnect: a request unanswered this long drops its connection

	Progress io.Writer // a progress line every second; nil: none

	hooks *testHooks // tests only: break a run on purpose
}

// testHooks let the package's tests make a run fail (or stop) on purpose.
type testHooks struct {
	// beforeStorm runs before a storm's measured logins: after the
	// registrations (login-storm) or after the password logins, before
	// their connections are reset (resume-storm; conns[i] is accts[i]'s
	// connection). It may change what the accounts log in with.
	beforeStorm func(ctx context.Context, accts []account, conns []*leanConn)
	// clockStarted runs when a message workload's clock starts, after its
	// setup and before the users' keepers (reconnect mode) start.
	clockStarted func(users []*simUser)
}

// DefaultConfig returns the defaults of `natter bench`.
func DefaultConfig() Config {
	return Config{
		Addrs:            []string{"127.0.0.1:6000"},
		Workload:         WorkloadOneToOne,
		Password:         "bench-password",
		Pairs:            50,
		Groups:           1,
		Members:          50,
		Senders:          1,
		MaxOutstanding:   256,
		MsgSize:          32,
		Warmup:           2 * time.Second,
		Duration:         10 * time.Second,
		Drain:            5 * time.Second,
		SetupConcurrency: 16,
		Conns:            1000,
		PingInterval:     30 * time.Second,
		Users:            1000,
		Concurrency:      32,
		Sources:          AutoSources(),
		GiveUp:           60 * time.Second,
		ReplyTimeout:     15 * time.Second,
	}
}

// messages reports whether the workload sends chat messages (one-to-one,
// group), rather than only connecting (idle, login-storm, resume-storm).
func (c Config) messages() bool { return c.Workload == WorkloadOneToOne || c.Workload == WorkloadGroup }

// withDefaults fills in what Config leaves to the workload, and turns
// the addresses into WebSocket URLs with Transport "ws".
func (c Config) withDefaults() Config {
	if c.Transport == TransportWS || c.TLS != nil {
		addrs := make([]string, len(c.Addrs))
		for i, a := range c.Addrs {
			if c.Transport == TransportWS {
				a = WebSocketURL(a)
			}
			if c.TLS != nil {
				if rest, ok := strings.CutPrefix(a, "ws://"); ok {
					a = "wss://" + rest
				}
			}
			addrs[i] = a
		}
		c.Addrs = addrs
	}
	if !c.messages() {
		return c
	}
	if c.Workload == WorkloadGroup {
		if c.Mode == "" {
			c.Mode = Open
		}
		if c.Rate == 0 && c.Mode == Open {
			c.Rate = DefaultGroupRate
		}
		if c.AckInterval == 0 {
			c.AckInterval = defaultGroupAckInterval
		}
		return c
	}
	if c.Mode == "" {
		c.Mode = Closed
	}
	if c.AckInterval == 0 {
		c.AckInterval = defaultAckInterval
	}
	return c
}

// Validate checks the configuration (with the workload's defaults filled
// in).
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case len(c.Addrs) == 0:
		return errors.New("no address to connect to")
	case !slices.Contains(Workloads, c.Workload):
		return fmt.Errorf("workload %q: want one of %s", c.Workload, strings.Join(Workloads, ", "))
	case c.Password == "" || len(c.Password) > 72:
		return errors.New("password: want 1-72 bytes")
	case c.Timeout < 0:
		return errors.New("timeout must not be negative")
	case c.SetupConcurrency < 1:
		return fmt.Errorf("setup concurrency %d: want at least 1", c.SetupConcurrency)
	case c.Reconnect && !c.messages():
		return fmt.Errorf("reconnect: only the %s and %s workloads reconnect", WorkloadOneToOne, WorkloadGroup)
	case c.Transport != "" && c.Transport != TransportTCP && c.Transport != TransportWS:
		return fmt.Errorf("transport %q: want %s or %s", c.Transport, TransportTCP, TransportWS)
	}
	for _, a := range c.Addrs {
		if _, err := dialTarget(a); err != nil {
			return err
		}
	}
	for _, pid := range c.ServerPIDs {
		if _, err := readProcCPU(pid); err != nil {
			return fmt.Errorf("server pid %d: %w", pid, err)
		}
	}
	switch c.Workload {
	case WorkloadIdle:
		return c.validateIdle()
	case WorkloadLoginStorm, WorkloadResumeStorm:
		return c.validateStorm()
	}
	return c.validateMessages()
}

func (c Config) validateMessages() error {
	switch {
	case c.Workload == WorkloadOneToOne && c.Pairs < 1:
		return fmt.Errorf("pairs %d: want at least 1", c.Pairs)
	case c.Workload == WorkloadGroup && c.Groups < 1:
		return fmt.Errorf("groups %d: want at least 1", c.Groups)
	case c.Workload == WorkloadGroup && (c.Members < 2 || c.Members > maxGroupMembers):
		return fmt.Errorf("members %d: want 2-%d (a sender and someone to receive)", c.Members, maxGroupMembers)
	case c.Workload == WorkloadGroup && (c.Senders < 1 || c.Senders > c.Members):
		return fmt.Errorf("senders %d: want 1-%d (senders are members)", c.Senders, c.Members)
	case c.Workload == WorkloadGroup && c.Mode != Open:
		return fmt.Errorf("mode %q: the group workload is open loop only (--rate)", c.Mode)
	case c.Mode != Closed && c.Mode != Open:
		return fmt.Errorf("mode %q: want %s or %s", c.Mode, Closed, Open)
	case c.Mode == Open && c.Rate <= 0:
		return errors.New("open mode needs a rate above 0 (messages per second in total)")
	case c.Mode == Closed && c.Rate != 0:
		return errors.New("a rate only applies to open mode")
	case c.MaxOutstanding < 1:
		return fmt.Errorf("max outstanding %d: want at least 1", c.MaxOutstanding)
	case c.MsgSize < 1 || c.MsgSize > 60000:
		return fmt.Errorf("message size %d: want 1-60000 bytes", c.MsgSize)
	case c.Warmup < 0 || c.Drain < 0:
		return errors.New("warmup and drain must not be negative")
	case c.Duration <= 0:
		return fmt.Errorf("duration %s: want more than 0", c.Duration)
	case c.Timeout > 0 && c.Timeout <= c.Warmup+c.Duration+c.Drain:
		return fmt.Errorf("timeout %s: want more than warmup + duration + drain (%s), plus time for the setup",
			c.Timeout, c.Warmup+c.Duration+c.Drain)
	case c.AckInterval < 0:
		return fmt.Errorf("ack interval %s: want more than 0 (0: the workload's default)", c.AckInterval)
	case c.Reconnect && c.ReplyTimeout <= 0:
		return fmt.Errorf("reply timeout %s: want more than 0", c.ReplyTimeout)
	case c.Reconnect && c.GiveUp <= c.ReplyTimeout:
		return fmt.Errorf("give-up %s: want more than the reply timeout (%s)", c.GiveUp, c.ReplyTimeout)
	}
	return nil
}

func (c Config) validateIdle() error {
	switch {
	case c.Conns < 1:
		return fmt.Errorf("conns %d: want at least 1", c.Conns)
	case c.PingInterval <= 0:
		return fmt.Errorf("ping interval %s: want more than 0", c.PingInterval)
	case c.Duration <= 0:
		return fmt.Errorf("duration %s: want more than 0", c.Duration)
	case c.Timeout > 0 && c.Timeout <= c.Duration:
		return fmt.Errorf("timeout %s: want more than the duration (%s), plus time for the setup", c.Timeout, c.Duration)
	case c.GatewayPID < 0:
		return fmt.Errorf("gateway pid %d: want a process id (0: none)", c.GatewayPID)
	}
	return nil
}

func (c Config) validateStorm() error {
	switch {
	case c.Users < 1:
		return fmt.Errorf("users %d: want at least 1", c.Users)
	case c.Concurrency < 1:
		return fmt.Errorf("concurrency %d: want at least 1", c.Concurrency)
	}
	return nil
}

// hardTimeout is the bound on the whole run.
func (c Config) hardTimeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	switch c.Workload {
	case WorkloadIdle:
		return c.Duration + setupAllowance(2*c.Conns) // a registration and a login each
	case WorkloadLoginStorm:
		return setupAllowance(2 * c.Users)
	case WorkloadResumeStorm:
		return setupAllowance(3 * c.Users)
	}
	return c.Warmup + c.Duration + c.Drain + 2*time.Minute
}

// setupAllowance is the time allowed for n registrations and logins.
func setupAllowance(n int) time.Duration {
	return 2*time.Minute + time.Duration(n)*setupAllowancePerRequest
}

// Run runs the configured workload. A non-nil Report comes back whenever the
// workload got as far as sending (the connection workloads: as far as the
// logins they measure), also with an error (a hard stop); whether the
// checks passed is Report.OK.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	switch cfg.Workload {
	case WorkloadOneToOne:
		return OneToOne(ctx, cfg, log)
	case WorkloadGroup:
		return Group(ctx, cfg, log)
	case WorkloadIdle:
		return Idle(ctx, cfg, log)
	case WorkloadLoginStorm, WorkloadResumeStorm:
		return Storm(ctx, cfg, log)
	}
	return nil, fmt.Errorf("unknown workload %q", cfg.Workload)
}
