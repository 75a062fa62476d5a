package chatclient

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
)

// proxy is a TCP relay in front of a gateway that a test can cut: drop
// every connection, refuse new ones for a while, or drop a connection
// right after a client frame that matches has been passed on (so the
// request is done but its reply is lost).
type proxy struct {
	t      *testing.T
	target string
	addr   string

	mu        sync.Mutex
	ln        net.Listener
	conns     map[net.Conn]bool
	cutAfter  []byte // drop the connection once a client frame containing this was forwarded
	listening bool
	wg        sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() {
		p.down()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln, p.listening = ln, true
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.relay(c)
		}
	}()
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

// cut closes every connection but keeps accepting.
func (p *proxy) cut() {
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// up accepts again on the same address.
func (p *proxy) up() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy listen again: %v", err)
	}
	p.serve(ln)
}

// cutAfterFrame drops the connection carrying the next client frame that
// contains s, right after passing it on.
func (p *proxy) cutAfterFrame(s string) {
	p.mu.Lock()
	p.cutAfter = []byte(s)
	p.mu.Unlock()
}

func (p *proxy) relay(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	p.conns[client], p.conns[server] = true, true
	p.mu.Unlock()
	closeBoth := func() {
		client.Close()
		server.Close()
		p.mu.Lock()
		delete(p.conns, client)
		delete(p.conns, server)
		p.mu.Unlock()
	}
	p.wg.Add(2)
	go func() { // server -> client
		defer p.wg.Done()
		io.Copy(client, server)
		closeBoth()
	}()
	go func() { // client -> server, frame by frame
		defer p.wg.Done()
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
				p.mu.Lock()
				hit := p.cutAfter != nil && bytes.Contains(line, p.cutAfter)
				if hit {
					p.cutAfter = nil
				}
				p.mu.Unlock()
				if hit {
					// Let the frame reach the gateway, then lose the
					// connection before its reply can come back (the
					// server side closes once the reply fails to go on).
					client.Close()
					return
				}
				buf = buf[i+1:]
			}
		}
	}()
}
