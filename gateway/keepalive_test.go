package gateway

import (
	"testing"
	"time"
)

// TestClientKeepAliveSpread: each client socket gets its own idle time
// before the first probe, within [30 s, 45 s), so that connections that
// came together do not probe together.
func TestClientKeepAliveSpread(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 100 {
		ka := clientKeepAlive()
		if !ka.Enable || ka.Interval != keepAliveInterval || ka.Count != keepAliveCount {
			t.Fatalf("keepalive %+v", ka)
		}
		if ka.Idle < keepAliveIdle || ka.Idle >= keepAliveIdle+keepAliveSpread {
			t.Fatalf("idle %v: want [%v, %v)", ka.Idle, keepAliveIdle, keepAliveIdle+keepAliveSpread)
		}
		seen[ka.Idle] = true
	}
	if len(seen) < 50 {
		t.Errorf("%d different idle times in 100 connections: want them spread", len(seen))
	}
}
