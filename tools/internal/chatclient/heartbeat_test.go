package chatclient

import (
	"testing"
	"time"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/tools/internal/allinone/allinonetest"
)

// TestHeartbeatKeepsIdleConnection: against a gateway that closes
// connections silent for 400 ms, a client that pings every 100 ms keeps its
// one connection while the user types nothing, and one that does not ping
// is cut off (and comes back).
func TestHeartbeatKeepsIdleConnection(t *testing.T) {
	addr := allinonetest.Start(t, func(c *gateway.Config) { c.IdleTimeout = 400 * time.Millisecond })
	start := func(heartbeat time.Duration) *testClient {
		cfg := testConfig(addr)
		cfg.Heartbeat = heartbeat
		return startClient(t, cfg)
	}
	pinging, silent := start(100*time.Millisecond), start(0)
	pinging.login(pinging.register("pinger"))
	silent.login(silent.register("silent"))
	time.Sleep(1500 * time.Millisecond) // idle on purpose: nothing is typed
	lost := func(c *testClient) int {
		c.rec.mu.Lock()
		defer c.rec.mu.Unlock()
		n := 0
		for _, s := range c.rec.conns {
			if !s.Up {
				n++
			}
		}
		return n
	}
	if n := lost(pinging); n != 0 {
		t.Errorf("the pinging client lost its connection %d times", n)
	}
	if n := lost(silent); n == 0 {
		t.Error("the silent client was never cut off: the idle timeout is not in force, so this test proves nothing")
	}
	pinging.do("friends")
}
