package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/dbtest"
)

// TestKilledServerKeepsWhatItAcknowledged runs natter serve as a real
// process, has several senders send to one receiver at once (so the
// offline service commits batches of several messages) and the receiver
// acknowledge part of what it got, then kills the server with SIGKILL the
// moment the last answer arrived. After a restart on the same data every
// message a sender was answered for is in the receiver's inbox once, in
// the order of its seq, the acknowledged ones are not replayed, and
// sending them again with their cids stores nothing.
func TestKilledServerKeepsWhatItAcknowledged(t *testing.T) {
	run := func(t *testing.T, store ...string) {
		args := append([]string{"serve", "--listen", anyPort, "--bcrypt-cost", "4",
			"--flood-rate", "100000", "--flood-burst", "100000"}, store...)
		srv := startProc(t, "natter", args...)
		addr := srv.tcpAddr(logServes)

		const senders, perSender = 4, 60
		b := dial(t, addr, '\n', "b")
		bid := b.register("bob", "pw")
		ids := make([]int64, senders)
		for i := range ids {
			ids[i] = b.register(fmt.Sprint("sender", i), "pw")
		}
		b.login(bid, "pw")

		// sent[g][i] is the mid answered for sender g's i-th message.
		sent := make([][]string, senders)
		var wg sync.WaitGroup
		errs := make(chan error, senders)
		for g := range senders {
			wg.Go(func() {
				mids, err := sendAll(addr, ids[g], bid, g, 0, perSender)
				sent[g] = mids
				if err != nil {
					errs <- fmt.Errorf("sender %d: %w", g, err)
				}
			})
		}
		// The receiver reads what is pushed while they send.
		seqMID := map[int64]string{}
		total := senders * perSender
		for len(seqMID) < total {
			f := b.expect(6)
			seq := f.num("seq")
			if _, dup := seqMID[seq]; dup || seq != int64(len(seqMID)+1) {
				t.Fatalf("push seq %d after %d pushes", seq, len(seqMID))
			}
			seqMID[seq] = f.str("mid")
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Acknowledge two thirds, wait for the answer (given once the ack
		// is committed), and kill the server right away.
		acked := int64(2 * total / 3)
		b.send(frame{"msgid": 13, "seq": acked, "reqid": "last"})
		if f := b.expect(14); f.num("errno") != 0 || f.str("reqid") != "last" {
			t.Fatalf("ack: %v", f)
		}
		srv.stop(syscall.SIGKILL)

		addr = startProc(t, "natter", args...).tcpAddr(logServes)
		b = dial(t, addr, '\n', "b again")
		if ack := b.login(bid, "pw"); ack.num("pending") != int64(total)-acked {
			t.Fatalf("after SIGKILL: pending %v, want %d", ack["pending"], int64(total)-acked)
		}
		for seq := acked + 1; seq <= int64(total); seq++ {
			f := b.expect(6)
			if f.num("seq") != seq || f.str("mid") != seqMID[seq] {
				t.Fatalf("replay after SIGKILL: got seq %d mid %s, want seq %d mid %s", f.num("seq"), f.str("mid"), seq, seqMID[seq])
			}
		}
		b.quiet(200 * time.Millisecond)
		// Every answered mid was pushed once.
		var pushed, answered []string
		for _, mid := range seqMID {
			pushed = append(pushed, mid)
		}
		for _, mids := range sent {
			answered = append(answered, mids...)
		}
		slices.Sort(pushed)
		slices.Sort(answered)
		if !slices.Equal(pushed, answered) {
			t.Fatalf("%d mids answered, %d pushed: they differ", len(answered), len(pushed))
		}
		// The senders send everything again with the same cids (as after
		// a lost answer): all duplicates, nothing stored.
		for g := range senders {
			mids, err := sendAll(addr, ids[g], bid, g, 0, perSender)
			if err != nil {
				t.Fatalf("sender %d again: %v", g, err)
			}
			if !slices.Equal(mids, sent[g]) {
				t.Fatalf("sender %d again: other mids", g)
			}
		}
		b.quiet(200 * time.Millisecond)
		// And the next new message continues the inbox.
		if _, err := sendAll(addr, ids[0], bid, 0, perSender, 1); err != nil {
			t.Fatal(err)
		}
		if f := b.expect(6); f.num("seq") != int64(total+1) {
			t.Fatalf("next message: %v, want seq %d", f, total+1)
		}
	}
	t.Run("sqlite", func(t *testing.T) { run(t, "--data", t.TempDir()) })
	t.Run("mysql", func(t *testing.T) { run(t, "--mysql-dsn", dbtest.MySQLDSN(t)) })
}

// sendAll logs sender (password "pw") in on its own connection and sends
// it messages from..from+n-1 to to, with cids naming sender g and the
// message, one at a time, each after the answer to the one before. It
// returns the mids answered; a duplicate answer counts (a resend).
func sendAll(addr net.Addr, sender, to int64, g, from, n int) ([]string, error) {
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	call := func(req map[string]any, re int64) (map[string]any, error) {
		b, err := json.Marshal(req)
		if err != nil {
			return nil, err
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(append(b, '\n')); err != nil {
			return nil, err
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return nil, err
			}
			var f map[string]any
			if err := json.Unmarshal([]byte(strings.TrimSpace(line)), &f); err != nil {
				return nil, err
			}
			if id, _ := f["msgid"].(float64); int64(id) != re {
				continue // a presence notice
			}
			if e, _ := f["errno"].(float64); e != 0 {
				return nil, fmt.Errorf("answer %v", f)
			}
			return f, nil
		}
	}
	if _, err := call(map[string]any{"msgid": 1, "id": sender, "password": "pw"}, 2); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	var mids []string
	for i := from; i < from+n; i++ {
		f, err := call(map[string]any{"msgid": 6, "toid": to, "msg": fmt.Sprint(i), "cid": fmt.Sprintf("s%d-%d", g, i)}, 14)
		if err != nil {
			return mids, fmt.Errorf("message %d: %w", i, err)
		}
		mid, _ := f["mid"].(string)
		mids = append(mids, mid)
	}
	return mids, nil
}
