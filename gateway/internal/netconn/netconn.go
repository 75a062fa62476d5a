// Package netconn is the gateway's connection layer: the socket, framing
// and the write queue, and nothing about what the frames mean.
//
// A Conn is one client connection. Its transport reads bytes, splits them
// into frames (a JSON object ended by '\n' or NUL, shared/wire's rules) and
// hands each frame, in order and never two at once, to the connection's
// Handler (the session). Frames the session sends go into a queue bounded in
// bytes; the transport writes what is queued with one write (writev) for
// everything ready. A client that does not read is cut off (ReasonSlowClient)
// rather than waited for.
//
// Two transports serve a Conn:
//
//   - Loop (loop.go) runs plain TCP connections on a few event loops
//     (github.com/panjf2000/gnet): an idle connection has no goroutine and no
//     buffer of its own, only its state (a few hundred bytes). A Handler
//     called from a loop must not block.
//   - Stream (stream.go) serves any net.Conn with a reader goroutine and a
//     writer goroutine that runs only while there is something to write:
//     TLS, WebSocket (gateway/wsconn), and net.Pipe in tests.
//
// Legacy records (records.go): for the original C++ client (NUL-framed, on
// TCP) every frame is written as one 1,024-byte record, paced by what the
// client's TCP has acknowledged, and a frame counts as read only once the
// connection's end shows it (docs/protocol.md, "The original client").
//
// Lock order: Conn.mu is the only lock of this package held while calling
// out, and only into the transport's non-blocking wake; a Handler is never
// called with it held.
package netconn

import (
	"errors"
	"time"
)

// Options tune every connection of a transport.
type Options struct {
	MaxFrame     int           // bytes; a longer frame ends the connection (ErrFrameTooLarge)
	WriteLimit   int           // bytes queued for a client before it counts as slow and is cut off
	WriteTimeout time.Duration // a client that takes none of its queued bytes for this long is cut off
	IdleTimeout  time.Duration // close a connection that sends nothing for this long; 0: never
	// LegacyGap is the least time between two legacy records (records.go).
	LegacyGap time.Duration
}

// Handler is what a connection calls: the session.
type Handler interface {
	// Frame handles one frame (without its terminator, which is term).
	// frame is valid only during the call. Calls for one connection come
	// one at a time, in order. On an event loop it must not block.
	Frame(c *Conn, frame []byte, term byte)
	// Refused is called when the client sent what cannot be read as a
	// frame (ErrFrameTooLarge, a transport's refusal such as a binary
	// WebSocket message): the session answers with SendLast. No Frame
	// follows.
	Refused(c *Conn, err error)
	// ReadEnded is called once when no more frames will come: the client
	// closed its side or reset it (err io.EOF, ECONNRESET), reading failed,
	// or the connection is closing. The connection may still be written
	// to: a client that half-closed gets the answers to what it sent. The
	// session finishes what is under way and ends the connection with
	// SendLast or Close; keepWriting false says there is nothing left to
	// write, and the transport closes the connection at once.
	ReadEnded(c *Conn, err error) (keepWriting bool)
	// Closed is called once, after the last Frame, when the connection
	// has ended.
	Closed(c *Conn, end End)
}

// End is how a connection ended.
type End struct {
	Reason Reason
	// Err is the error that ended reading (io.EOF: the client closed it);
	// nil when the gateway closed the connection.
	Err error
	// Confirmed is, for a connection that carried legacy records with
	// marks, the highest mark per user the client has provably read.
	Confirmed map[int64]int64
	// Unconfirmed is true when records were written whose reading the
	// end could not confirm.
	Unconfirmed bool
}

// Reason is why a connection ended: the first cause wins.
type Reason uint32

// Reasons.
const (
	ReasonUnknown       Reason = iota
	ReasonEOF                  // the client closed the connection (or reset it)
	ReasonIdle                 // nothing received for IdleTimeout
	ReasonSlowClient           // the write queue passed WriteLimit
	ReasonWriteTimeout         // the client took nothing for WriteTimeout
	ReasonWriteError           // a write failed (the peer is gone)
	ReasonReadError            // a read failed otherwise
	ReasonFrameTooLarge        // a frame over MaxFrame
	ReasonKicked               // a newer login replaced the session
	ReasonExpired              // the gateway's presence lease had expired
	ReasonDelivery             // a replay or gap fill failed; the client resumes
	ReasonDrain                // the gateway is draining (lame duck)
	ReasonStop                 // the gateway stopped at once
	ReasonConnLimit            // refused: too many connections
	ReasonUnsupported          // a message the transport cannot carry (a binary WebSocket message)
	ReasonFlood                // the client sent far more than it waited for answers to
	NumReasons
)

var reasonNames = [NumReasons]string{
	ReasonUnknown:       "other",
	ReasonEOF:           "eof",
	ReasonIdle:          "idle",
	ReasonSlowClient:    "slow_client",
	ReasonWriteTimeout:  "write_timeout",
	ReasonWriteError:    "write_error",
	ReasonReadError:     "read_error",
	ReasonFrameTooLarge: "frame_too_large",
	ReasonKicked:        "kicked",
	ReasonExpired:       "expired",
	ReasonDelivery:      "delivery_error",
	ReasonDrain:         "drain",
	ReasonStop:          "stop",
	ReasonConnLimit:     "conn_limit",
	ReasonUnsupported:   "unsupported_data",
	ReasonFlood:         "flood",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "other"
}

// Errors a Conn reports.
var (
	// ErrFrameTooLarge ends a connection whose client sent a frame over
	// MaxFrame: the stream cannot be resynchronized after it.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrClosed is returned by Send on a closed connection.
	ErrClosed = errors.New("connection closed")
)
