package loadgen

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
)

func TestParseSources(t *testing.T) {
	tests := []struct {
		in    string
		auto  bool
		addrs []string
		err   bool
	}{
		{"", true, nil, false},
		{"auto", true, nil, false},
		{"system", false, nil, false},
		{"127.0.0.1-127.0.0.3", false, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}, false},
		{"127.0.0.255-127.0.1.0", false, []string{"127.0.0.255", "127.0.1.0"}, false},
		{"10.0.0.1, 10.0.0.7 ,127.0.0.2-127.0.0.2", false, []string{"10.0.0.1", "10.0.0.7", "127.0.0.2"}, false},
		{"::1", false, []string{"::1"}, false},
		{"127.0.0.3-127.0.0.1", false, nil, true},
		{"::1-::2", false, nil, true},
		{"127.0.0.1-", false, nil, true},
		{"localhost", false, nil, true},
		{",", false, nil, true},
		{"10.0.0.0-10.1.0.0", false, nil, true}, // more than 65,536
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := ParseSources(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("ParseSources(%q) = %v, want error %v", tt.in, err, tt.err)
			}
			if err != nil {
				return
			}
			var got []string
			for _, a := range s.Addrs {
				got = append(got, a.String())
			}
			if s.Auto != tt.auto || !slices.Equal(got, tt.addrs) {
				t.Fatalf("ParseSources(%q) = auto %v %v, want auto %v %v", tt.in, s.Auto, got, tt.auto, tt.addrs)
			}
			if again, err := ParseSources(s.String()); err != nil || again.Auto != s.Auto || !slices.Equal(again.Addrs, s.Addrs) {
				t.Errorf("ParseSources(%q) (its String) = %v, %v", s.String(), again, err)
			}
		})
	}
}

func TestResolveSources(t *testing.T) {
	const ports = 28232 // 32768-60999; 7/8 of it is 24,703 per address
	two := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")}
	tests := []struct {
		name    string
		s       Sources
		targets []string
		conns   int
		want    int
	}{
		{"auto, few connections", AutoSources(), []string{"127.0.0.1:7400"}, 20000, 0},
		{"auto, just one address", AutoSources(), []string{"127.0.0.1:7400"}, 24703, 0},
		{"auto, two addresses", AutoSources(), []string{"127.0.0.1:7400"}, 24704, 2},
		{"auto, 100k", AutoSources(), []string{"127.0.0.1:7400", "localhost:7401"}, 100000, 5},
		{"auto, not loopback", AutoSources(), []string{"127.0.0.1:7400", "10.1.1.1:7400"}, 100000, 0},
		{"auto, IPv6 loopback", AutoSources(), []string{"[::1]:7400"}, 100000, 0},
		{"system", Sources{}, []string{"127.0.0.1:7400"}, 100000, 0},
		{"explicit", Sources{Addrs: two}, []string{"127.0.0.1:7400"}, 10, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolveSources(tt.s, tt.targets, tt.conns, ports)
			if len(got) != tt.want {
				t.Fatalf("resolveSources = %v, want %d addresses", got, tt.want)
			}
			if len(got) > 0 && tt.s.Auto && (got[0] != netip.MustParseAddr("127.0.0.1") || !got[len(got)-1].IsLoopback()) {
				t.Errorf("resolveSources = %v, want 127.0.0.1 and up", got)
			}
		})
	}
	if n := portRangeSize(); n <= 0 {
		t.Errorf("portRangeSize() = %d", n)
	}
}

// The dialer connects from its source addresses round-robin.
func TestDialerSources(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan string, 6)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			c.Close()
		}
	}()
	s, err := ParseSources("127.0.0.2-127.0.0.4")
	if err != nil {
		t.Fatal(err)
	}
	d := &dialer{sources: s.Addrs}
	for range 6 {
		c, err := d.dial(context.Background(), ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	var got []string
	for range 6 {
		got = append(got, <-accepted)
	}
	slices.Sort(got)
	want := []string{"127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3", "127.0.0.4", "127.0.0.4"}
	if !slices.Equal(got, want) {
		t.Fatalf("connections came from %v, want %v", got, want)
	}
}
