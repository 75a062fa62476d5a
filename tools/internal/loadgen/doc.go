// Package loadgen is natter's load generator and delivery checker, behind
// `natter bench`. It drives any natter address with simulated users that it
// registers and logs in itself, speaking the full dialect (newline-framed
// JSON, replies by reqid, cumulative acks), and checks every message it sends:
// nothing the server acknowledged may be lost, doubled or reordered.
//
// The parts:
//
//   - conn: one full-dialect client connection (dial, send a frame, a reader
//     goroutine that routes replies to their request by reqid and pushes to a
//     callback).
//   - Checker: the delivery accounting. A Conversation is one sender to one
//     receiver stream whose messages are numbered n = 1, 2, ...; a Recipient
//     checks one receiving connection's seq values. The Checker also keeps the
//     latency histograms and the measured window.
//   - workloads: OneToOne (pairs of users, closed or open loop). Each workload
//     registers and logs in its users before the clock starts (connectUsers),
//     then runs warmup, measurement and drain, and returns a Report.
//
// Every chat carries its bench metadata in one extra field, which the server
// passes through to the recipient:
//
//	"bench":{"run":"<run id>","n":<per-conversation counter>,"t":<send time, unix ns>}
//
// Latency is the receipt time minus t, on the same process clock.
package loadgen
