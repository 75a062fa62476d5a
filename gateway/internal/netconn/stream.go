package netconn

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// Stream serves connections on goroutines: a reader per connection and a
// writer that runs only while something is queued. It serves any net.Conn
// (TLS, WebSocket, net.Pipe); plain TCP connections are cheaper on a Loop.
type Stream struct {
	env
}

// NewStream returns a Stream whose connections use opts.
func NewStream(opts Options, log *slog.Logger) *Stream {
	return &Stream{env{opts: opts, log: log}}
}

// Serve runs conn until it has ended and Handler.Closed has returned. The
// handler is made by newHandler from the connection before any frame is
// read.
func (s *Stream) Serve(conn net.Conn, newHandler func(*Conn) Handler) {
	t := &streamConn{conn: conn, closed: make(chan struct{}), done: make(chan struct{}), resumed: make(chan struct{}, 1)}
	c := newConn(nil, &s.env)
	c.t = t
	t.c = c
	c.h = newHandler(c)
	t.read()
}

// streamConn is a Conn's transport on goroutines.
type streamConn struct {
	c    *Conn
	conn net.Conn

	wmu     sync.Mutex
	running bool // the writer runs
	again   bool // woken while running: look again before ending
	wdone   chan struct{}

	resumed chan struct{} // Resume after Pause

	closeOnce sync.Once
	closed    chan struct{} // the socket is closed
	done      chan struct{} // the connection has ended (Closed was called)
}

// read is the reader: it splits what comes into frames until reading
// ends, then waits for the connection to be closed and reports the end.
func (t *streamConn) read() {
	c := t.c
	buf := make([]byte, 0, 512)
	var err error
	for {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(2*cap(buf), c.opts.MaxFrame+1))
			copy(nb, buf)
			buf = nb
		}
		var n int
		n, err = t.conn.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			c.read(time.Now().UnixNano())
			buf = buf[:len(buf)+n]
			used, ferr := t.frames(buf)
			buf = buf[:copy(buf, buf[used:])]
			if ferr != nil {
				c.h.Refused(c, ferr)
				err = ferr
				break
			}
			if cap(buf) > 4<<10 && len(buf) < 512 {
				buf = append(make([]byte, 0, 512), buf...) // give back a buffer grown by one large frame
			}
			for c.paused.Load() {
				// The client's frames wait in the socket meanwhile.
				select {
				case <-t.resumed:
				case <-t.closed:
					err = net.ErrClosed
				}
				if errors.Is(err, net.ErrClosed) {
					break
				}
				if !c.paused.Load() {
					used, ferr := t.frames(buf)
					buf = buf[:copy(buf, buf[used:])]
					if ferr != nil {
						c.h.Refused(c, ferr)
						err = ferr
						break
					}
				}
			}
			if errors.Is(err, ErrFrameTooLarge) {
				break
			}
		}
		if err != nil {
			if f, ok := tailFrame(buf, c.opts.MaxFrame); ok && !errors.Is(err, net.ErrClosed) {
				c.enterFrames()
				c.h.Frame(c, f, '\n')
				if c.leaveFrames() {
					c.kick()
				}
			}
			break
		}
	}
	c.endReading(err)
	<-t.closed
	t.waitWriter()
	c.finish(err)
	close(t.done)
}

// frames hands the complete frames in buf to the handler.
func (t *streamConn) frames(buf []byte) (int, error) {
	c := t.c
	c.enterFrames()
	used, err := splitFrames(buf, c.opts.MaxFrame, func(f []byte, term byte) bool {
		c.term.Store(uint32(term))
		c.h.Frame(c, f, term)
		return !c.Closing() && !c.paused.Load()
	})
	if c.leaveFrames() {
		c.kick()
	}
	return used, err
}

func (t *streamConn) wake() {
	t.wmu.Lock()
	if t.running {
		t.again = true
		t.wmu.Unlock()
		return
	}
	t.running = true
	t.wdone = make(chan struct{})
	done := t.wdone
	t.wmu.Unlock()
	go t.write(done)
}

// write writes what is queued, one writev at a time, until nothing is.
func (t *streamConn) write(done chan struct{}) {
	defer close(done)
	c := t.c
	for {
		frames, n, last := c.take()
		wrote := frames != nil
		if wrote {
			c.setPending(n, time.Now().UnixNano())
			t.conn.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
			bufs := net.Buffers(*frames)
			_, err := bufs.WriteTo(t.conn)
			giveBack(frames)
			c.written(0, 0)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					c.SetReason(ReasonWriteTimeout)
				} else {
					c.SetReason(ReasonWriteError)
				}
				c.log.Debug("write", "err", err)
				c.Close()
			}
		}
		if last {
			c.Close()
		}
		t.wmu.Lock()
		if !wrote && !t.again {
			t.running = false
			t.wmu.Unlock()
			return
		}
		t.again = false
		t.wmu.Unlock()
	}
}

func (t *streamConn) waitWriter() {
	t.wmu.Lock()
	done := t.wdone
	running := t.running
	t.wmu.Unlock()
	if running {
		<-done
	}
}

func (t *streamConn) shutdown() {
	t.closeOnce.Do(func() {
		t.conn.Close()
		close(t.closed)
	})
}

func (t *streamConn) closeWrite() error {
	if tc, ok := t.conn.(interface{ CloseWrite() error }); ok {
		return tc.CloseWrite()
	}
	return errors.New("half-close not supported")
}

func (t *streamConn) writeRecord(b []byte) error {
	t.conn.SetWriteDeadline(time.Now().Add(t.c.opts.WriteTimeout))
	_, err := t.conn.Write(b)
	return err
}

func (t *streamConn) tcpState() (tcpState, bool) { return t.state(readTCPState) }

func (t *streamConn) endState() (tcpState, bool) { return t.state(readEndState) }

func (t *streamConn) state(read func(fd int) (tcpState, bool)) (tcpState, bool) {
	tc, ok := t.conn.(*net.TCPConn)
	if !ok {
		return tcpState{}, false
	}
	select {
	case <-t.closed:
		return tcpState{}, false
	default:
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return tcpState{}, false
	}
	var st tcpState
	var ok2 bool
	if rc.Control(func(fd uintptr) { st, ok2 = read(int(fd)) }) != nil {
		return tcpState{}, false
	}
	return st, ok2
}

func (t *streamConn) remoteAddr() net.Addr { return t.conn.RemoteAddr() }

func (t *streamConn) resume() {
	select {
	case t.resumed <- struct{}{}:
	default:
	}
}

func (t *streamConn) writeNow([]byte) (int, error) { return 0, errNoDirect }

func (t *streamConn) tcp() bool {
	_, ok := t.conn.(*net.TCPConn)
	return ok
}
