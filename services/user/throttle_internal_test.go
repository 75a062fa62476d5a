package user

import (
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/services/user/internal/account"
)

// TestThrottleNext: free failures lock nothing; then locks of Delay,
// doubling, up to MaxDelay; a failure after the window starts the count
// again; a lock never shrinks.
func TestThrottleNext(t *testing.T) {
	c := ThrottleConfig{AccountFailures: 3, Delay: time.Second, MaxDelay: 10 * time.Second, Window: time.Hour}
	t0 := time.Unix(1_000_000, 0)
	var f account.Failure
	var locks []time.Duration
	for i := range 10 {
		now := t0.Add(time.Duration(i) * time.Minute)
		f = c.next(f, 3, now)
		if f.Failures != i+1 || f.LastFailure != now.UnixMilli() {
			t.Fatalf("failure %d: %+v", i+1, f)
		}
		locks = append(locks, time.Duration(max(0, f.LockedUntil-now.UnixMilli()))*time.Millisecond)
	}
	want := []time.Duration{0, 0, 0, 1, 2, 4, 8, 10, 10, 10}
	for i, w := range want {
		if locks[i] != w*time.Second {
			t.Errorf("lock after failure %d: %v, want %v", i+1, locks[i], w*time.Second)
		}
	}
	// After the window, the count starts again.
	later := t0.Add(3 * time.Hour)
	if g := c.next(f, 3, later); g.Failures != 1 || g.LockedUntil != f.LockedUntil {
		t.Errorf("after the window: %+v", g)
	}
	// Thousands of failures: the lock stays MaxDelay (no overflow).
	f = account.Failure{Failures: 100_000, LastFailure: t0.UnixMilli()}
	if g := c.next(f, 3, t0); g.LockedUntil-t0.UnixMilli() != c.MaxDelay.Milliseconds() {
		t.Errorf("lock after 100001 failures: %v", time.Duration(g.LockedUntil-t0.UnixMilli())*time.Millisecond)
	}
}

func TestThrottleValidate(t *testing.T) {
	for _, tc := range []struct {
		c    ThrottleConfig
		want []string // the flags the error names; none: valid
	}{
		{DefaultThrottle(), nil},
		{ThrottleConfig{}, nil}, // off
		{ThrottleConfig{AccountFailures: -1, AddressFailures: -2}, []string{"--login-account-failures -1", "--login-address-failures -2"}},
		{ThrottleConfig{AccountFailures: 5, Delay: 0, MaxDelay: time.Second, Window: time.Hour}, []string{"--login-delay 0s"}},
		{ThrottleConfig{AccountFailures: 5, Delay: time.Minute, MaxDelay: time.Second, Window: time.Hour}, []string{"--login-max-delay 1s"}},
		{ThrottleConfig{AddressFailures: 5, Delay: time.Second, MaxDelay: time.Hour, Window: time.Minute}, []string{"--login-failure-window 1m0s"}},
		{ThrottleConfig{AddressFailures: 5, Delay: -time.Second, MaxDelay: -time.Minute, Window: -time.Hour},
			[]string{"--login-delay -1s", "--login-max-delay -1m0s", "--login-failure-window -1h0m0s"}},
	} {
		err := tc.c.Validate()
		if (err == nil) != (len(tc.want) == 0) {
			t.Errorf("%+v: %v, want an error naming %q", tc.c, err, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %v, want it to name %q", tc.c, err, w)
			}
		}
	}
}

func TestAddressKey(t *testing.T) {
	for _, tc := range []struct{ remote, want string }{
		{"203.0.113.7", "a:203.0.113.7"},
		{"203.0.113.7:51234", "a:203.0.113.7"},
		{"[2001:db8:1:2:3:4:5:6]:443", "a:2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "a:2001:db8:1:2::/64"},
		{"::ffff:203.0.113.7", "a:203.0.113.7"},
		{"fe80::1%eth0", "a:fe80::/64"},
		{"", ""},
		{"127.0.0.1:40000", ""}, // a proxy on the gateway's machine
		{"[::1]:40000", ""},
		{"gateway-7", ""},
		{"pipe", ""},
	} {
		if got := addressKey(tc.remote); got != tc.want {
			t.Errorf("addressKey(%q) = %q, want %q", tc.remote, got, tc.want)
		}
	}
}

func TestLogSampler(t *testing.T) {
	l := newLogSampler(2)
	t0 := time.Unix(100, 0)
	var allowed int
	for range 5 {
		if ok, _ := l.allow(t0); ok {
			allowed++
		}
	}
	if allowed != 2 {
		t.Errorf("%d lines in one second, want 2", allowed)
	}
	if ok, skipped := l.allow(t0.Add(time.Second)); !ok || skipped != 3 {
		t.Errorf("the next second: ok %v, skipped %d, want true, 3", ok, skipped)
	}
}
