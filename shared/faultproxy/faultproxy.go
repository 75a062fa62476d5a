// Package faultproxy is a TCP relay for tests, set in front of a gateway
// or a NATS server, that a test can break: close every connection, refuse
// service for a while, or lose a connection right after a matching frame
// has been passed on (so the request is done but its reply is lost). Client frames are
// read line by line (the newline protocol); WebSocket client frames are
// masked, so for them the proxy can count the gateway's replies instead.
package faultproxy

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
)

// action is what a matching frame triggers.
type action int

const (
	cutAll  action = iota // close every connection, keep accepting
	goDown                // close every connection and refuse new ones
	dropOne               // close the client side of the connection that carried the frame
)

// Proxy relays connections from Addr to its target. Its listener stays
// bound from New to the end of the test, also while it is down (it then
// closes what it accepts at once), so no other test can take its port.
type Proxy struct {
	t      testing.TB
	target string
	addr   string
	ln     net.Listener

	mu      sync.Mutex
	conns   map[net.Conn]bool
	down    bool
	match   []byte // frames that count
	replies bool   // count server reads containing match instead of client frames
	every   int    // act after every this many matching frames
	left    int    // actions left
	act     action
	seen    int // matching frames forwarded since the last action
	actions int // actions taken
	// settleOn (SettleOn): actions wait until every connection has had a
	// reply containing it; unsettled counts those that have not.
	settleOn  []byte
	unsettled int
	wg        sync.WaitGroup
}

// New starts a proxy to target on a port of its own; it stops with the
// test.
func New(t testing.TB, target string) *Proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{t: t, target: target, addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]bool{}}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.relay(c)
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.Down()
		p.wg.Wait()
	})
	return p
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.addr }

// Cut closes every connection but keeps serving new ones.
func (p *Proxy) Cut() {
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// Down closes every connection and serves no new one (each is closed
// as soon as it is accepted) until Up.
func (p *Proxy) Down() {
	p.mu.Lock()
	p.down = true
	p.mu.Unlock()
	p.Cut()
}

// Up serves new connections again after Down.
func (p *Proxy) Up() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// CutEvery cuts every connection after every n client frames containing
// match, times times.
func (p *Proxy) CutEvery(match string, n, times int) { p.set(match, false, n, times, cutAll) }

// CutEveryReply cuts every connection after every n reads from the target
// containing match, times times, relaying the bytes as they come: for
// WebSocket, whose client frames are masked (unreadable on the way) but
// whose server frames are not. It applies to connections made after it.
func (p *Proxy) CutEveryReply(match string, n, times int) { p.set(match, true, n, times, cutAll) }

// DownAfter takes the proxy down for good after n client frames
// containing match.
func (p *Proxy) DownAfter(match string, n int) { p.set(match, false, n, 1, goDown) }

// SettleOn makes the actions wait until every connection made from now on
// has relayed a reply from the target containing marker, e.g. the answer
// to a login carrying a new resume token: a cut that took that reply would
// leave its client a token the server has already replaced.
func (p *Proxy) SettleOn(marker string) {
	p.mu.Lock()
	p.settleOn = []byte(marker)
	p.mu.Unlock()
}

// DropAfterFrame drops the connection carrying the next client frame that
// contains match, right after passing it on: the frame reaches the target,
// whose reply then finds the connection gone.
func (p *Proxy) DropAfterFrame(match string) { p.set(match, false, 1, 1, dropOne) }

func (p *Proxy) set(match string, replies bool, n, times int, a action) {
	p.mu.Lock()
	p.match, p.replies, p.every, p.left, p.act, p.seen = []byte(match), replies, n, times, a, 0
	p.mu.Unlock()
}

// Taken is how many cuts, downs or drops the frames triggered.
func (p *Proxy) Taken() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.actions
}

// counted counts a forwarded frame and takes the action it triggers;
// true: client, the connection that carried it, is to be dropped.
func (p *Proxy) counted(b []byte, fromServer bool) (dropped bool) {
	p.mu.Lock()
	hit, a := false, p.act
	if p.left > 0 && p.replies == fromServer && bytes.Contains(b, p.match) {
		p.seen++
		if p.seen >= p.every && p.unsettled == 0 {
			p.seen = 0
			p.left--
			p.actions++
			hit = true
		}
	}
	p.mu.Unlock()
	switch {
	case !hit:
	case a == goDown:
		p.Down()
	case a == cutAll:
		p.Cut()
	case a == dropOne:
		return true
	}
	return false
}

func (p *Proxy) relay(client net.Conn) {
	p.mu.Lock()
	down, replies, settleOn := p.down, p.replies, p.settleOn
	p.mu.Unlock()
	if down {
		client.Close()
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		client.Close()
		server.Close()
		return
	}
	p.conns[client], p.conns[server] = true, true
	settled := settleOn == nil
	if !settled {
		p.unsettled++
	}
	p.mu.Unlock()
	settle := func() {
		p.mu.Lock()
		if !settled {
			settled = true
			p.unsettled--
		}
		p.mu.Unlock()
	}
	closeBoth := func() {
		client.Close()
		server.Close()
		p.mu.Lock()
		delete(p.conns, client)
		delete(p.conns, server)
		p.mu.Unlock()
		settle()
	}
	p.wg.Go(func() { // server -> client, watching for the settling reply
		buf := make([]byte, 4096)
		for {
			n, err := server.Read(buf)
			if err != nil {
				closeBoth()
				return
			}
			if _, err := client.Write(buf[:n]); err != nil {
				closeBoth()
				return
			}
			if settleOn != nil && bytes.Contains(buf[:n], settleOn) {
				settle()
			}
			if replies {
				p.counted(buf[:n], true)
			}
		}
	})
	if replies {
		p.wg.Go(func() {
			io.Copy(server, client)
			closeBoth()
		})
		return
	}
	p.wg.Go(func() { // client -> server, frame by frame
		buf := make([]byte, 0, 4096)
		tmp := make([]byte, 4096)
		for {
			n, err := client.Read(tmp)
			if err != nil {
				closeBoth()
				return
			}
			buf = append(buf, tmp[:n]...)
			for {
				i := bytes.IndexByte(buf, '\n')
				if i < 0 {
					break
				}
				line := buf[:i+1]
				if _, err := server.Write(line); err != nil {
					closeBoth()
					return
				}
				if p.counted(line, false) {
					// Let the frame reach the target, then lose the
					// connection before its reply can come back (the
					// server side closes once the reply fails to go on).
					client.Close()
					return
				}
				buf = buf[i+1:]
			}
		}
	})
}
