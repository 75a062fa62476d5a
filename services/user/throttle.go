package user

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/natter-chat/natter/services/user/internal/account"
	"github.com/natter-chat/natter/shared/api"
)

// ThrottleConfig limits password guessing. Failed password logins are
// counted per account and per source address; once a key has more than
// its free failures, each further failure locks it for Delay, doubled by
// every failure after that up to MaxDelay (the lockout), and a login
// during a lock is refused with api.ErrLoginThrottled without looking at
// the password. A key's failures are forgotten Window after its last one;
// a successful login forgets its account's (not its address's: an
// attacker's own account must not reset the address). The counts live in
// the database, so every instance of the service and every gateway share
// them.
type ThrottleConfig struct {
	// AccountFailures is how many failed logins of one account are free
	// (0: accounts are not throttled).
	AccountFailures int
	// AddressFailures is how many failed logins from one address (an IPv6
	// address's /64) are free (0: addresses are not throttled).
	AddressFailures int
	// Delay is the lock after the first failure past the free ones.
	Delay time.Duration
	// MaxDelay bounds the lock: past it, a key gets one guess per MaxDelay.
	MaxDelay time.Duration
	// Window is how long failures are remembered after the last one.
	Window time.Duration
}

// DefaultThrottle returns the limits the binaries start with: 5 free
// failures per account and 50 per address, then locks of 1 s, 2 s, 4 s ...
// up to 15 minutes, forgotten after an hour without failures. An attacker
// gets about 5 + 10 + 4 guesses of one account in the first hour and 4 an
// hour after that.
func DefaultThrottle() ThrottleConfig {
	return ThrottleConfig{AccountFailures: 5, AddressFailures: 50, Delay: time.Second, MaxDelay: 15 * time.Minute, Window: time.Hour}
}

// Validate reports every invalid field, each naming its flag.
func (c ThrottleConfig) Validate() error {
	var errs []error
	if c.AccountFailures < 0 {
		errs = append(errs, fmt.Errorf("--%s %d: want 0 or more", flagAccountFailures, c.AccountFailures))
	}
	if c.AddressFailures < 0 {
		errs = append(errs, fmt.Errorf("--%s %d: want 0 or more", flagAddressFailures, c.AddressFailures))
	}
	if len(errs) > 0 || c.AccountFailures == 0 && c.AddressFailures == 0 {
		return errors.Join(errs...) // nil: off
	}
	if c.Delay <= 0 {
		errs = append(errs, fmt.Errorf("--%s %v: want more than 0", flagLoginDelay, c.Delay))
	}
	if c.MaxDelay < c.Delay {
		errs = append(errs, fmt.Errorf("--%s %v: want at least --%s (%v)", flagLoginMaxDelay, c.MaxDelay, flagLoginDelay, c.Delay))
	}
	if c.Window < c.MaxDelay {
		errs = append(errs, fmt.Errorf("--%s %v: want at least --%s (%v)", flagFailureWindow, c.Window, flagLoginMaxDelay, c.MaxDelay))
	}
	return errors.Join(errs...)
}

// next is a key's record after a failure at now: the failures counted
// since the window began, and a lock once there are more than free.
func (c ThrottleConfig) next(prev account.Failure, free int, now time.Time) account.Failure {
	nowMS := now.UnixMilli()
	f := prev
	if nowMS-f.LastFailure > c.Window.Milliseconds() {
		f.Failures = 0
	}
	f.Failures++
	f.LastFailure = nowMS
	if over := f.Failures - free; over > 0 {
		d := c.Delay
		for i := 1; i < over && d < c.MaxDelay; i++ {
			d *= 2
		}
		f.LockedUntil = max(f.LockedUntil, nowMS+min(d, c.MaxDelay).Milliseconds())
	}
	return f
}

// Throttle scopes (the metrics' label).
const (
	scopeAccount    = "account"
	scopeAddress    = "address"
	scopeConcurrent = "concurrent"
)

// throttle keeps password guessing to what ThrottleConfig allows.
type throttle struct {
	cfg   ThrottleConfig
	store *account.Store
	m     *metrics
	log   *slog.Logger
	// refusals samples the log lines of refused logins.
	refusals *logSampler

	mu       sync.Mutex
	inflight map[int64]struct{} // accounts with a password check running here
	// locks remembers the keys this instance saw locked, until when (unix
	// ms), so that a guessing flood is refused without a database read
	// each. A lock only ends by running out (no login gets in to clear
	// it), so the copy cannot be stale in the attacker's favour.
	locks map[string]int64
}

// maxCachedLocks bounds throttle.locks (about 100 bytes each).
const maxCachedLocks = 100_000

func newThrottle(cfg ThrottleConfig, store *account.Store, m *metrics, log *slog.Logger) *throttle {
	return &throttle{cfg: cfg, store: store, m: m, log: log, refusals: newLogSampler(10),
		inflight: map[int64]struct{}{}, locks: map[string]int64{}}
}

// cachedLock returns until when key is known to be locked (0: not known).
func (t *throttle) cachedLock(key string, nowMS int64) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	until := t.locks[key]
	if until <= nowMS {
		delete(t.locks, key)
		return 0
	}
	return until
}

// cacheLock remembers that key is locked until (unix ms).
func (t *throttle) cacheLock(key string, until, nowMS int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.locks) >= maxCachedLocks {
		for k, u := range t.locks {
			if u <= nowMS {
				delete(t.locks, k)
			}
		}
		if len(t.locks) >= maxCachedLocks {
			return // the database still has it
		}
	}
	t.locks[key] = max(t.locks[key], until)
}

func (t *throttle) on() bool { return t.cfg.AccountFailures > 0 || t.cfg.AddressFailures > 0 }

// attempt is one password login under the throttle.
type attempt struct {
	uid     int64
	remote  string
	keys    []string // the throttled keys: the account's, the address's
	free    map[string]int
	records map[string]account.Failure
	started bool
}

func accountKey(uid int64) string { return "u:" + strconv.FormatInt(uid, 10) }

// addressKey is the key of a client address: the IP (host:port accepted),
// an IPv6 address by its /64 (one subscriber's network); "" if remote is
// no address, or a loopback one: a proxy on the gateway's machine (nginx
// in front of natter serve or the local cluster) would otherwise have all
// its clients locked out together.
func addressKey(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	ip = ip.WithZone("").Unmap()
	if ip.IsLoopback() {
		return ""
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return "a:" + p.String()
	}
	return "a:" + ip.String()
}

// begin checks whether a password login of uid from remote may be tried
// now: nil, or an api.LoginThrottled error saying when to retry. A nil
// answer must be followed by end.
func (t *throttle) begin(ctx context.Context, uid int64, remote string, now time.Time) (*attempt, error) {
	a := &attempt{uid: uid, remote: remote, free: map[string]int{}}
	if !t.on() {
		return a, nil
	}
	if t.cfg.AccountFailures > 0 {
		k := accountKey(uid)
		a.keys, a.free[k] = append(a.keys, k), t.cfg.AccountFailures
	}
	if k := addressKey(remote); k != "" && t.cfg.AddressFailures > 0 {
		a.keys, a.free[k] = append(a.keys, k), t.cfg.AddressFailures
	}
	nowMS := now.UnixMilli()
	scopeOf := func(k string) string {
		if k == accountKey(uid) {
			return scopeAccount
		}
		return scopeAddress
	}
	for _, k := range a.keys {
		if until := t.cachedLock(k, nowMS); until > 0 {
			t.refused(uid, remote, scopeOf(k), -1, time.Duration(until-nowMS)*time.Millisecond)
			return nil, api.LoginThrottled(time.Duration(until-nowMS) * time.Millisecond)
		}
	}
	records, err := t.store.LoginFailures(ctx, a.keys)
	if err != nil {
		return nil, fmt.Errorf("login %d: %w", uid, err)
	}
	a.records = records
	for _, k := range a.keys {
		if until := records[k].LockedUntil; until > nowMS {
			t.cacheLock(k, until, nowMS)
			t.refused(uid, remote, scopeOf(k), records[k].Failures, time.Duration(until-nowMS)*time.Millisecond)
			return nil, api.LoginThrottled(time.Duration(until-nowMS) * time.Millisecond)
		}
	}
	if t.cfg.AccountFailures > 0 {
		// One password check of an account at a time on this instance: a
		// burst of parallel guesses cannot outrun the count.
		t.mu.Lock()
		_, busy := t.inflight[uid]
		if !busy {
			t.inflight[uid] = struct{}{}
		}
		t.mu.Unlock()
		if busy {
			t.refused(uid, remote, scopeConcurrent, 0, time.Second)
			return nil, api.LoginThrottled(time.Second)
		}
		a.started = true
	}
	return a, nil
}

// end records the outcome at now of an attempt begin allowed: a wrong
// password (or an unknown id) counts against its keys and is logged; a
// right one forgets the account's failures.
func (t *throttle) end(ctx context.Context, a *attempt, badLogin bool, now time.Time) {
	if a.started {
		// After the failure is recorded: the next attempt must see it.
		defer func() {
			t.mu.Lock()
			delete(t.inflight, a.uid)
			t.mu.Unlock()
		}()
	}
	if !badLogin {
		if k := accountKey(a.uid); a.records[k].Failures > 0 {
			if err := t.store.ClearLoginFailures(ctx, k); err != nil {
				t.log.Error("login: clear failed logins", "user_id", a.uid, "err", err)
			}
		}
		return
	}
	attrs := []any{"user_id", a.uid, "remote", a.remote}
	if len(a.keys) > 0 {
		records, err := t.store.AddLoginFailure(ctx, a.keys, func(k string, prev account.Failure) account.Failure {
			return t.cfg.next(prev, a.free[k], now)
		})
		if err != nil {
			t.log.Error("login: record failed login", "user_id", a.uid, "remote", a.remote, "err", err)
		}
		for _, k := range a.keys {
			r, ok := records[k]
			if !ok {
				continue
			}
			scope := scopeAddress
			if k == accountKey(a.uid) {
				scope = scopeAccount
			}
			attrs = append(attrs, scope+"_failures", r.Failures)
			if r.LockedUntil > now.UnixMilli() {
				t.cacheLock(k, r.LockedUntil, now.UnixMilli())
				t.m.loginDelays.WithLabelValues(scope).Inc()
				attrs = append(attrs, scope+"_locked_for", time.Duration(r.LockedUntil-now.UnixMilli())*time.Millisecond)
			}
		}
	}
	t.log.Warn("login failed: wrong password or unknown id", attrs...)
}

// refused counts a login refused by the throttle and logs it (sampled: a
// guessing attack must not flood the log); failures < 0: not read.
func (t *throttle) refused(uid int64, remote, scope string, failures int, retry time.Duration) {
	t.m.loginThrottled.WithLabelValues(scope).Inc()
	if ok, skipped := t.refusals.allow(time.Now()); ok {
		attrs := []any{"user_id", uid, "remote", remote, "scope", scope}
		if failures >= 0 {
			attrs = append(attrs, "failures", failures)
		}
		t.log.Warn("login refused: too many failed logins",
			append(attrs, "retry_in", retry.Round(time.Millisecond), "not_logged_since_last", skipped)...)
	}
}

// expire deletes the records whose window is over.
func (t *throttle) expire(ctx context.Context, now time.Time) (int64, error) {
	if !t.on() {
		return 0, nil
	}
	return t.store.ExpireLoginFailures(ctx, now.Add(-t.cfg.Window).UnixMilli(), now.UnixMilli())
}

// logSampler lets through at most perSecond log lines a second and counts
// the others.
type logSampler struct {
	perSecond int
	mu        sync.Mutex
	second    int64
	n         int
	skipped   int64
}

func newLogSampler(perSecond int) *logSampler { return &logSampler{perSecond: perSecond} }

// allow reports whether a line may be logged at now, and how many were
// not since the last one that was.
func (l *logSampler) allow(now time.Time) (ok bool, skipped int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := now.Unix(); s != l.second {
		l.second, l.n = s, 0
	}
	if l.n >= l.perSecond {
		l.skipped++
		return false, 0
	}
	l.n++
	skipped, l.skipped = l.skipped, 0
	return true, skipped
}
