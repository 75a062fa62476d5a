package netconn

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Accept backoff: a failed accept (out of file descriptors, EMFILE or
// ENFILE, or a connection aborted before it was taken) is tried again after
// a wait that doubles from acceptWaitMin to acceptWaitMax, and logged at
// most once per acceptLogEvery.
const (
	acceptWaitMin  = 5 * time.Millisecond
	acceptWaitMax  = time.Second
	acceptLogEvery = time.Second
)

// Listener is a net.Listener whose Accept never fails but for its close:
// a failed accept is tried again after a growing wait and logged at most
// once a second, with the count of the failures not logged since the
// previous line. At the file-descriptor limit every accept fails at once,
// and a listener that logged each would write hundreds of lines a second.
type Listener struct {
	net.Listener
	name string // which listener, for the log: "tcp", "tls", "websocket", "wss"
	log  *slog.Logger

	closeOnce sync.Once
	closed    chan struct{}

	mu         sync.Mutex
	lastLog    time.Time
	suppressed int // failures not logged since lastLog
}

// NewListener wraps ln; name says which listener it is in the log.
func NewListener(ln net.Listener, name string, log *slog.Logger) *Listener {
	return &Listener{Listener: ln, name: name, log: log, closed: make(chan struct{})}
}

// Accept waits for the next connection. Its only error is the listener's
// (net.ErrClosed once Close was called).
func (l *Listener) Accept() (net.Conn, error) {
	var wait time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return c, nil
		}
		select {
		case <-l.closed:
			return nil, err
		default:
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		l.failed(err)
		wait = min(max(2*wait, acceptWaitMin), acceptWaitMax)
		t := time.NewTimer(wait)
		select {
		case <-l.closed:
			t.Stop()
			return nil, net.ErrClosed
		case <-t.C:
		}
	}
}

// failed logs a failed accept, or counts it when a line was written less
// than acceptLogEvery ago.
func (l *Listener) failed(err error) {
	now := time.Now()
	l.mu.Lock()
	if !l.lastLog.IsZero() && now.Sub(l.lastLog) < acceptLogEvery {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.suppressed = 0
	l.lastLog = now
	l.mu.Unlock()
	l.log.Warn("accept failed; retrying (at most one line a second)", "listener", l.name, "err", err, "suppressed", n)
}

// Close closes the listener; a pending Accept returns.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}
