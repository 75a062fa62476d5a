package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/eventually"
)

// TestChatScriptedWaitsForGateway: `natter chat --register --id-only` and
// `--user --send` started while nothing listens (connection refused) keep
// trying with backoff and succeed once natter serve is up; --id-only prints
// the id alone on standard output. With no gateway at all they give up
// after --connect-timeout, non-zero.
func TestChatScriptedWaitsForGateway(t *testing.T) {
	// The client is told the address before anything listens on it: a
	// port the test holds without listening (connections refused), which
	// later listens and relays to natter serve on a port of its own. No
	// other process can take the port in between.
	held := holdPort(t)
	env := []string{"NATTER_PASSWORD=pw", "NATTER_CHAT_ADDR=" + held.addr}
	reg := startChat(t, "reg", env, "--register", "alice", "--id-only")
	// With --id-only the notices go to standard error.
	eventually.NoError(t, 30*time.Second, func() error {
		if !strings.Contains(reg.stderr.String(), "cannot reach") {
			return fmt.Errorf("no refused connection: %s", reg.stderr.String())
		}
		return nil
	})
	// --ws-listen '' turns WebSocket and the page off (docs/configuration.md).
	srv := startProc(t, "natter", "serve", "--listen", anyPort, "--data", t.TempDir(), "--bcrypt-cost", "4", "--ws-listen", "")
	forward(t, held.listen(t), srv.listenAddr(logServes))
	if err := reg.exit(); err != nil {
		t.Fatalf("--register after a refused connection: %v\n%s", err, reg.stderr.String())
	}
	id := strings.TrimSpace(reg.out.String())
	if !regexp.MustCompile(`^[0-9]+\n$`).MatchString(reg.out.String()) {
		t.Fatalf("--id-only printed %q, want the id and a newline", reg.out.String())
	}
	send := startChat(t, "alice", env, "--user", id, "--send", "friends")
	if err := send.exit(); err != nil {
		t.Fatalf("--send: %v", err)
	}

	// Nothing listening, ever: a bounded wait, then a clear failure.
	gone := refusedAddr(t)
	start := time.Now()
	never := startChat(t, "never", []string{"NATTER_PASSWORD=pw", "NATTER_CHAT_ADDR=" + gone},
		"--user", id, "--send", "friends", "--connect-timeout", "1s")
	err := never.exit()
	if err == nil || !strings.Contains(never.stderr.String(), "gave up after") {
		t.Fatalf("no gateway: exit %v, stderr %q; want a failure after --connect-timeout", err, never.stderr.String())
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("no gateway: gave up after %v with --connect-timeout 1s", took)
	}
}
