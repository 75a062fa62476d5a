package loadgen

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/natter-chat/natter/gateway/wsconn"
)

const (
	// maxSourceAddrs bounds a source address range (127.0.0.1-127.0.255.255
	// is more than enough for any run).
	maxSourceAddrs = 1 << 16
	// defaultPortRange is the ephemeral port count assumed where
	// /proc/sys/net/ipv4/ip_local_port_range cannot be read (Linux's default
	// range 32768-60999).
	defaultPortRange = 28232
	portRangeFile    = "/proc/sys/net/ipv4/ip_local_port_range"
)

// Sources says which local addresses the bench connects from. The zero
// value leaves the choice to the system.
type Sources struct {
	// Auto: when every target is an IPv4 loopback address and a run needs
	// more connections than one source address has ephemeral ports for,
	// spread them over 127.0.0.1, 127.0.0.2, ...
	Auto bool
	// Addrs: connect from these addresses, round-robin (overrides Auto).
	Addrs []netip.Addr
}

// AutoSources is the default: automatic for loopback targets.
func AutoSources() Sources { return Sources{Auto: true} }

// String is the form ParseSources reads.
func (s Sources) String() string {
	switch {
	case len(s.Addrs) > 0:
		parts := make([]string, len(s.Addrs))
		for i, a := range s.Addrs {
			parts[i] = a.String()
		}
		return strings.Join(parts, ",")
	case s.Auto:
		return "auto"
	}
	return "system"
}

// ParseSources reads a --source-addrs value: "auto" (or empty), "system"
// (the system's choice), or a comma-separated list of addresses and ranges
// of IPv4 addresses ("127.0.0.1-127.0.0.8").
func ParseSources(v string) (Sources, error) {
	v = strings.TrimSpace(v)
	switch v {
	case "", "auto":
		return AutoSources(), nil
	case "system":
		return Sources{}, nil
	}
	var s Sources
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return Sources{}, fmt.Errorf("source address %q: %w", part, err)
		}
		if !isRange {
			s.Addrs = append(s.Addrs, first)
			continue
		}
		last, err := netip.ParseAddr(strings.TrimSpace(hi))
		if err != nil {
			return Sources{}, fmt.Errorf("source address range %q: %w", part, err)
		}
		if !first.Is4() || !last.Is4() || last.Less(first) {
			return Sources{}, fmt.Errorf("source address range %q: want two IPv4 addresses, the lower first", part)
		}
		for a := first; ; a = a.Next() {
			if len(s.Addrs) >= maxSourceAddrs {
				return Sources{}, fmt.Errorf("source addresses: more than %d", maxSourceAddrs)
			}
			s.Addrs = append(s.Addrs, a)
			if a == last {
				break
			}
		}
	}
	if len(s.Addrs) == 0 {
		return Sources{}, fmt.Errorf("source addresses %q: none given", v)
	}
	return s, nil
}

// dialer makes the bench's TCP connections, from the run's source
// addresses round-robin (none: the system's choice).
type dialer struct {
	tls     *tls.Config // Config.TLS
	sources []netip.Addr
	next    atomic.Uint64
	conns   atomic.Int64 // connections made by dial, which numbers them
}

// newDialer resolves cfg.Sources for a run that holds up to conns
// connections at once.
func newDialer(cfg Config, conns int) *dialer {
	return &dialer{tls: cfg.TLS, sources: resolveSources(cfg.Sources, cfg.Addrs, conns, portRangeSize())}
}

// resolveSources returns the source addresses to dial from: the explicit
// ones, or with Auto, as many loopback addresses as conns need at ports
// usable ephemeral ports each (nil: one is enough, or a target is not IPv4
// loopback).
func resolveSources(s Sources, targets []string, conns, ports int) []netip.Addr {
	if len(s.Addrs) > 0 {
		return s.Addrs
	}
	budget := ports - ports/8 // leave some for TIME_WAIT leftovers and everything else
	if !s.Auto || budget <= 0 || conns <= budget {
		return nil
	}
	for _, t := range targets {
		if !isLoopback4(t) {
			return nil
		}
	}
	n := min((conns+budget-1)/budget, maxSourceAddrs)
	addrs := make([]netip.Addr, 0, n)
	for a := netip.AddrFrom4([4]byte{127, 0, 0, 1}); len(addrs) < n; a = a.Next() {
		addrs = append(addrs, a)
	}
	return addrs
}

// isLoopback4 reports whether the host of addr (host:port) is an IPv4
// loopback address or "localhost".
func isLoopback4(addr string) bool {
	target, err := dialTarget(addr)
	if err != nil {
		return false
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().Is4() && ip.IsLoopback()
}

// portRangeSize is the number of ephemeral ports one source address has.
func portRangeSize() int {
	b, err := os.ReadFile(portRangeFile)
	if err != nil {
		return defaultPortRange
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return defaultPortRange
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || hi < lo {
		return defaultPortRange
	}
	return hi - lo + 1
}

// names lists the source addresses, nil for the system's choice.
func (d *dialer) names() []string {
	if len(d.sources) == 0 {
		return nil
	}
	out := make([]string, len(d.sources))
	for i, a := range d.sources {
		out[i] = a.String()
	}
	return out
}

// dial connects to addr (host:port, or a ws:// or wss:// URL) from the
// next source address. A WebSocket comes back as a wsconn.Conn: a stream
// of frames like a TCP connection's.
func (d *dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	nd := net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second}
	src := ""
	if len(d.sources) > 0 {
		a := d.sources[(d.next.Add(1)-1)%uint64(len(d.sources))]
		nd.LocalAddr = &net.TCPAddr{IP: a.AsSlice()}
		src = " from " + a.String()
	}
	if isWebSocket(addr) {
		ctx, cancel := context.WithTimeout(ctx, dialTimeout)
		defer cancel()
		// A transport of its own per connection: the handshake's HTTP
		// connection is taken over by the WebSocket, never pooled.
		tr := &http.Transport{DialContext: nd.DialContext, ForceAttemptHTTP2: false, TLSClientConfig: d.tls}
		nc, err := wsconn.Dial(ctx, addr, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
		if err != nil {
			return nil, fmt.Errorf("dial %s%s: %w", addr, src, err)
		}
		return nc, nil
	}
	var nc net.Conn
	var err error
	if d.tls != nil {
		td := tls.Dialer{NetDialer: &nd, Config: d.tls}
		nc, err = td.DialContext(ctx, "tcp", addr)
	} else {
		nc, err = nd.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s%s: %w", addr, src, err)
	}
	return nc, nil
}

// isWebSocket reports whether addr is a WebSocket URL.
func isWebSocket(addr string) bool {
	return strings.HasPrefix(addr, "ws://") || strings.HasPrefix(addr, "wss://")
}

// WebSocketURL is the WebSocket endpoint of a gateway address: host:port
// becomes ws://host:port/ws; a URL stays as it is.
func WebSocketURL(addr string) string {
	if isWebSocket(addr) {
		return addr
	}
	return "ws://" + addr + wsconn.Path
}

// dialTarget is the host:port a connection to addr goes to.
func dialTarget(addr string) (string, error) {
	if !isWebSocket(addr) {
		return addr, nil
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("address %q: not a WebSocket URL (ws://host:port/ws)", addr)
	}
	if u.Port() == "" {
		if u.Scheme == "wss" {
			return net.JoinHostPort(u.Hostname(), "443"), nil
		}
		return net.JoinHostPort(u.Hostname(), "80"), nil
	}
	return u.Host, nil
}
