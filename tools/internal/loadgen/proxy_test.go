package loadgen

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
)

// proxy is a TCP relay in front of a gateway that a test can break: after
// every so many client frames that match, it cuts every connection (and
// keeps accepting), or goes down for good (closes them and stops
// accepting). The frame that triggers it has reached the gateway; its
// reply is lost. (After tools/internal/chatclient/proxy_test.go.)
//
// A cut waits until every connection has had its login reply: a cut that
// took a resume's own reply would leave its client with a token the
// server has already rotated (the old one stops working once the new one
// is issued), and the client would have to log in with its password.
type proxy struct {
	t      *testing.T
	target string
	addr   string

	mu        sync.Mutex
	ln        net.Listener
	conns     map[net.Conn]bool
	listening bool
	match     []byte // frames that count
	replies   bool   // count server reads containing match instead (WebSocket: client frames are masked)
	every     int    // act after every this many matching frames
	left      int    // actions left
	goDown    bool   // the action: go down for good (else cut)
	seen      int    // matching frames forwarded since the last action
	unsettled int    // connections that have not had their login reply yet
	actions   int    // actions taken
	wg        sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr, p.ln, p.listening = ln.Addr().String(), ln, true
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
		p.down()
		p.wg.Wait()
	})
	return p
}

// cutEvery cuts every connection after every n client frames containing
// match, times times.
func (p *proxy) cutEvery(match string, n, times int) {
	p.mu.Lock()
	p.match, p.every, p.left, p.goDown = []byte(match), n, times, false
	p.mu.Unlock()
}

// cutEveryReply cuts every connection after every n reads from the
// gateway containing match, times times, relaying the bytes as they come:
// for WebSocket, whose client frames are masked (unreadable on the way)
// but whose server frames are not.
func (p *proxy) cutEveryReply(match string, n, times int) {
	p.mu.Lock()
	p.match, p.replies, p.every, p.left, p.goDown = []byte(match), true, n, times, false
	p.mu.Unlock()
}

// downAfter takes the proxy down for good after n client frames
// containing match.
func (p *proxy) downAfter(match string, n int) {
	p.mu.Lock()
	p.match, p.every, p.left, p.goDown = []byte(match), n, 1, true
	p.mu.Unlock()
}

// taken is how many cuts (or downs) happened.
func (p *proxy) taken() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.actions
}

// cut closes every connection but keeps accepting.
func (p *proxy) cut() {
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// down closes every connection and stops accepting.
func (p *proxy) down() {
	p.mu.Lock()
	if p.listening {
		p.ln.Close()
		p.listening = false
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// counted counts a forwarded client frame and takes the action it
// triggers.
func (p *proxy) counted(line []byte) {
	p.mu.Lock()
	act, goDown := false, p.goDown
	if p.left > 0 && bytes.Contains(line, p.match) {
		p.seen++
		if p.seen >= p.every && p.unsettled == 0 {
			p.seen = 0
			p.left--
			p.actions++
			act = true
		}
	}
	p.mu.Unlock()
	switch {
	case act && goDown:
		p.down()
	case act:
		p.cut()
	}
}

// loginReply is in the gateway's answer to a login (the new resume token).
var loginReply = []byte(`"token":"`)

func (p *proxy) relay(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	if !p.listening {
		p.mu.Unlock()
		client.Close()
		server.Close()
		return
	}
	p.conns[client], p.conns[server] = true, true
	p.unsettled++
	replies := p.replies
	p.mu.Unlock()
	var once sync.Once
	settle := func() {
		once.Do(func() {
			p.mu.Lock()
			p.unsettled--
			p.mu.Unlock()
		})
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
	p.wg.Go(func() { // server -> client, watching for the login reply
		buf := make([]byte, 4096)
		settled := false
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
			if !settled && bytes.Contains(buf[:n], loginReply) {
				settled = true
				settle()
			}
			if replies {
				p.counted(buf[:n])
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
				p.counted(line)
				buf = buf[i+1:]
			}
		}
	})
}
