package netconn

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Loop serves plain TCP connections on a few event loops (gnet): reading,
// framing and writing run on the loops' goroutines, so an idle connection
// costs its state and no goroutine or buffer. Handlers called from a loop
// must not block.
type Loop struct {
	env
	cli *gnet.Client
	ev  loopEvents
}

// NewLoop starts loops event loops (0: one per CPU).
func NewLoop(opts Options, loops int, log *slog.Logger) (*Loop, error) {
	l := &Loop{env: env{opts: opts, log: log}}
	l.ev.l = l
	o := []gnet.Option{
		gnet.WithMulticore(loops == 0),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(gnetLogger{log}),
		gnet.WithLoadBalancing(gnet.LeastConnections),
		// Each loop reads into one buffer shared by its connections.
		gnet.WithReadBufferCap(64 << 10),
	}
	if loops > 0 {
		o = append(o, gnet.WithNumEventLoop(loops))
	}
	cli, err := gnet.NewClient(&l.ev, o...)
	if err != nil {
		return nil, fmt.Errorf("event loops: %w", err)
	}
	if err := cli.Start(); err != nil {
		return nil, fmt.Errorf("event loops: %w", err)
	}
	l.cli = cli
	return l, nil
}

// Serve hands conn (a *net.TCPConn) to a loop and returns: the
// connection is served until it ends, when its handler's Closed is called.
// The handler is made by newHandler before any frame is read.
func (l *Loop) Serve(conn net.Conn, newHandler func(*Conn) Handler) error {
	lc := &loopConn{raddr: conn.RemoteAddr()}
	c := newConn(nil, &l.env)
	c.t = lc
	lc.c = c
	c.h = newHandler(c)
	// EnrollContext duplicates the socket into the loop and closes conn.
	if _, err := l.cli.EnrollContext(conn, lc); err != nil {
		return fmt.Errorf("enroll connection: %w", err)
	}
	return nil
}

// Stop stops the loops; connections still open are closed (their
// handlers see the end).
func (l *Loop) Stop() error { return l.cli.Stop() }

// loopConn is a Conn's transport on an event loop.
type loopConn struct {
	c     *Conn
	raddr net.Addr // the client's address, kept: gnet's may be released by the loop at any time

	gmu    sync.Mutex
	gc     gnet.Conn // set by OnOpen; nil before
	closed bool      // shut down before OnOpen: close at open

	// fdMu guards the socket against use after the loop closed it: the
	// legacy pacer writes and reads TCP_INFO from its own goroutine.
	fdMu     sync.RWMutex
	fdClosed bool

	leftover int         // bytes of a frame still arriving, already split
	resumed  atomic.Bool // Resume after Pause: what waits in the buffer is split again
	refused  bool        // the client was refused: what it sends is ignored
}

type loopEvents struct {
	gnet.BuiltinEventEngine
	l *Loop
}

func (e *loopEvents) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	lc := gc.Context().(*loopConn)
	lc.gmu.Lock()
	lc.gc = gc
	closed := lc.closed
	lc.gmu.Unlock()
	if closed {
		return nil, gnet.Close
	}
	gc.Wake(nil) // anything sent before the open is written now
	return nil, gnet.None
}

// conn is the gnet connection once open.
func (lc *loopConn) conn() gnet.Conn {
	lc.gmu.Lock()
	defer lc.gmu.Unlock()
	return lc.gc
}

// OnTraffic runs when bytes came in or the connection was woken to write.
func (e *loopEvents) OnTraffic(gc gnet.Conn) gnet.Action {
	lc := gc.Context().(*loopConn)
	c := lc.c
	if n := gc.InboundBuffered(); n != lc.leftover || lc.resumed.Swap(false) {
		now := time.Now().UnixNano()
		c.read(now)
		switch {
		case lc.refused:
			gc.Discard(n)
		case c.paused.Load():
			lc.leftover = n
			if n > MaxPausedBytes {
				c.SetReason(ReasonFlood)
				c.log.Warn("client sends far more than it waits for; disconnecting", "buffered_bytes", n)
				return gnet.Close
			}
		default:
			if err := lc.frames(gc); err != nil {
				lc.refused = true
				c.SetReason(ReasonFrameTooLarge)
				c.h.Refused(c, err)
			}
		}
	}
	return lc.flush()
}

// frames hands the complete frames read so far to the handler.
func (lc *loopConn) frames(gc gnet.Conn) error {
	c := lc.c
	buf, _ := gc.Peek(-1)
	c.enterFrames()
	used, err := splitFrames(buf, c.opts.MaxFrame, func(f []byte, term byte) bool {
		c.term.Store(uint32(term))
		c.h.Frame(c, f, term)
		return !c.Closing() && !c.paused.Load()
	})
	c.leaveFrames()
	gc.Discard(used)
	lc.leftover = gc.InboundBuffered()
	if err != nil {
		gc.Discard(lc.leftover)
		lc.leftover = 0
	}
	return err
}

// flush writes what is queued (on the loop). gnet keeps what the socket
// does not take and writes it when it can.
func (lc *loopConn) flush() gnet.Action {
	c, gc := lc.c, lc.conn()
	if c.Records() {
		c.kick() // the pacer writes records
		return gnet.None
	}
	frames, _, last := c.take()
	pend := 0
	if frames != nil {
		var err error
		if fs := *frames; len(fs) == 1 {
			_, err = gc.Write(fs[0]) // no iovec to build
		} else {
			_, err = gc.Writev(fs)
		}
		giveBack(frames) // gnet copied what the socket did not take
		pend = gc.OutboundBuffered()
		c.written(pend, time.Now().UnixNano())
		if err != nil {
			c.SetReason(ReasonWriteError)
			return gnet.Close
		}
	} else {
		pend = gc.OutboundBuffered()
		c.setPending(pend, time.Now().UnixNano())
	}
	if pend > c.opts.WriteLimit {
		c.SetReason(ReasonSlowClient)
		c.log.Warn("slow client: write queue full; disconnecting", "limit_bytes", c.opts.WriteLimit)
		return gnet.Close
	}
	if last || c.closedState() {
		return gnet.Close // gnet writes what it holds, then closes
	}
	return gnet.None
}

// OnClose runs on the loop before the socket is closed.
func (e *loopEvents) OnClose(gc gnet.Conn, err error) gnet.Action {
	lc := gc.Context().(*loopConn)
	c := lc.c
	if err == nil {
		err = net.ErrClosed // closed by the gateway
	} else if errors.Is(err, io.EOF) {
		if !lc.refused {
			if buf, _ := gc.Peek(-1); len(buf) > 0 {
				if f, ok := tailFrame(buf, c.opts.MaxFrame); ok {
					c.enterFrames()
					c.h.Frame(c, f, '\n')
					c.leaveFrames()
				}
			}
		}
		err = io.EOF
		// The client closed its side: answers to what it sent may still
		// be under way. Keep a copy of the socket to write them, once what
		// is queued is with the socket (gnet writes what it holds after
		// OnClose, and nothing may overtake it).
		if frames, _, _ := c.take(); frames != nil {
			gc.Writev(*frames)
			giveBack(frames)
			c.written(gc.OutboundBuffered(), time.Now().UnixNano())
		}
		if !c.Closing() && gc.OutboundBuffered() == 0 {
			if t := e.detach(lc); t != nil {
				c.endReading(err)
				go func() {
					<-t.closed
					t.waitWriter()
					c.finish(io.EOF)
				}()
				return gnet.None
			}
		}
	}
	c.endReading(err)
	lc.fdMu.Lock()
	lc.fdClosed = true
	lc.fdMu.Unlock()
	c.finish(err)
	return gnet.None
}

// detach moves a connection whose client half-closed it off the loop: a
// duplicate of the socket, served by a writer on a goroutine, so that
// what the session still sends reaches the client before the close. The
// caller reports the end once the new transport has closed.
func (e *loopEvents) detach(lc *loopConn) *streamConn {
	fd, err := lc.conn().Dup()
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), "client")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil
	}
	t := &streamConn{c: lc.c, conn: nc, closed: make(chan struct{}), done: make(chan struct{})}
	lc.fdMu.Lock()
	lc.fdClosed = true
	lc.fdMu.Unlock()
	c := lc.c
	c.mu.Lock()
	c.t = t
	c.scheduled = false // a wake that went to the loop is lost: wake the writer
	c.mu.Unlock()
	c.kick()
	return t
}

func (lc *loopConn) wake() {
	if gc := lc.conn(); gc != nil {
		gc.Wake(nil)
	}
}

func (lc *loopConn) shutdown() {
	lc.gmu.Lock()
	gc := lc.gc
	lc.closed = true
	lc.gmu.Unlock()
	if gc != nil {
		gc.Close()
	}
}

func (lc *loopConn) closeWrite() error {
	lc.fdMu.RLock()
	defer lc.fdMu.RUnlock()
	if lc.fdClosed {
		return net.ErrClosed
	}
	return unix.Shutdown(lc.conn().Fd(), unix.SHUT_WR)
}

// writeRecord writes b to the socket from the pacer's goroutine; the loop
// writes nothing to a connection in records mode.
func (lc *loopConn) writeRecord(b []byte) error {
	deadline := time.Now().Add(lc.c.opts.WriteTimeout)
	for len(b) > 0 {
		lc.fdMu.RLock()
		if lc.fdClosed {
			lc.fdMu.RUnlock()
			return net.ErrClosed
		}
		gc := lc.conn()
		if gc == nil { // not open yet
			lc.fdMu.RUnlock()
			if time.Now().After(deadline) {
				return os.ErrDeadlineExceeded
			}
			time.Sleep(time.Millisecond)
			continue
		}
		n, err := unix.Write(gc.Fd(), b)
		lc.fdMu.RUnlock()
		if n > 0 {
			b = b[n:]
		}
		switch {
		case err == nil:
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			if time.Now().After(deadline) {
				return os.ErrDeadlineExceeded
			}
			time.Sleep(time.Millisecond)
		default:
			return err
		}
	}
	return nil
}

func (lc *loopConn) tcpState() (tcpState, bool) { return lc.state(readTCPState) }

func (lc *loopConn) endState() (tcpState, bool) { return lc.state(readEndState) }

func (lc *loopConn) state(read func(fd int) (tcpState, bool)) (tcpState, bool) {
	lc.fdMu.RLock()
	defer lc.fdMu.RUnlock()
	gc := lc.conn()
	if lc.fdClosed || gc == nil {
		return tcpState{}, false
	}
	return read(gc.Fd())
}

func (lc *loopConn) tcp() bool { return true }

// writeNow writes b to the socket from the caller's goroutine; the loop
// writes nothing of this connection meanwhile (Conn.writing).
func (lc *loopConn) writeNow(b []byte) (int, error) {
	lc.fdMu.RLock()
	defer lc.fdMu.RUnlock()
	gc := lc.conn()
	if lc.fdClosed || gc == nil {
		return 0, errNoDirect // the loop reports the end
	}
	n, err := unix.Write(gc.Fd(), b)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return max(n, 0), nil
	}
	return 0, err
}

// resume makes the loop split what waited (OnTraffic looks at the buffer
// again).
func (lc *loopConn) resume() {
	if gc := lc.conn(); gc != nil {
		lc.resumed.Store(true)
		gc.Wake(nil)
	}
}

func (lc *loopConn) remoteAddr() net.Addr { return lc.raddr }

// gnetLogger sends gnet's own log lines to the gateway's log.
type gnetLogger struct{ log *slog.Logger }

func (g gnetLogger) Debugf(format string, args ...any) { g.log.Debug(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Infof(format string, args ...any)  { g.log.Debug(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Warnf(format string, args ...any)  { g.log.Warn(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Errorf(format string, args ...any) { g.log.Error(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Fatalf(format string, args ...any) { g.log.Error(fmt.Sprintf(format, args...)) }
