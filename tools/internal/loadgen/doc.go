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
//     callback). Pushes are read by scanPush, which neither allocates nor
//     takes a lock: a group run has thousands of connections in one process.
//   - Checker: the delivery accounting. A Conversation is one sender to one
//     receiver stream whose messages are numbered n = 1, 2, ...; a
//     GroupConversation is one sender to a group, each message expected once
//     at every other member; a Recipient checks one receiving connection's
//     seq values. The Checker also keeps the latency histograms (per delivery,
//     and per group message to its last member) and the measured window.
//   - workloads: OneToOne (pairs of users, closed or open loop) and Group
//     (groups of members, some of whom send, open loop). Each workload
//     registers and logs in its users (and makes its groups) before the clock
//     starts, then runClock runs warmup, measurement and drain, and the
//     workload returns a Report.
//   - connection workloads: Idle (many logged-in connections that only
//     ping, with the memory of the tool and of the gateway) and Storm
//     (login-storm: password logins as fast as the server takes them;
//     resume-storm: every connection reset at once, then logins with the
//     resume token). They use leanConn, a connection without a goroutine of
//     its own whose requests are answered synchronously to whoever holds it,
//     so that one process holds 100,000 of them: registerUsers and loginAll
//     run on a few worker goroutines, the idle pings on pingWorkers.
//   - reconnect mode (Config.Reconnect, reconnect.go): sessions kept through
//     lost connections. A keeper goroutine per user logs in again on the
//     next address (resume token, lastseq; the password if the token is
//     refused), each sender's outbox resends what was not acknowledged with
//     the same cid, one message at a time, receivers drop seqs they already
//     processed (Recipient.Push), and the report says how often and how
//     long sessions were down. Without it a lost connection fails the run.
//   - dialer: every workload's connections, from the run's source addresses
//     (Sources: one address has ~28,000 ephemeral ports, so loopback runs
//     beyond that spread over 127.0.0.1, 127.0.0.2, ...).
//
// Every chat carries its bench metadata in one extra field, which the server
// passes through to the recipient:
//
//	"bench":{"run":"<run id>","n":<per-conversation counter>,"t":<send time, unix ns>}
//
// Latency is the receipt time minus t, on the same process clock.
package loadgen
