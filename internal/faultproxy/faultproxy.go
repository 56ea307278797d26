// Package faultproxy is a TCP proxy for fault-injection tests: it forwards
// between a listener on 127.0.0.1 and a target until told to freeze, when it
// stops moving bytes in both directions while keeping every socket open,
// like a network that silently drops packets, or to black-hole the
// connections it has, which then stay open and silent for good while new
// ones work: a partition the server never learns about, as a stuck NAT
// entry, a dropped VPN or a node cut off from the cluster leaves behind.
//
// It stops reading rather than dropping packets, so the kernel still
// acknowledges what fits in its buffers: the far side's TCP sees a slow
// reader, not a dead one, and only application-level checks notice.
package faultproxy

import (
	"net"
	"sync"
)

// Proxy forwards connections from Addr to a target. It is safe for
// concurrent use.
type Proxy struct {
	ln     net.Listener
	target string
	// observe, if set, gives each connection a function that sees what
	// its client sends (see NewObserved).
	observe func() func([]byte)

	mu      sync.Mutex
	frozen  bool
	thawed  chan struct{} // closed when not frozen
	conns   map[net.Conn]*link
	closed  bool
	closing chan struct{} // closed by Close
	wg      sync.WaitGroup
}

// link is one proxied connection's state.
type link struct {
	holed chan struct{} // closed once black-holed
}

// New starts a proxy to target on a free port of 127.0.0.1.
func New(target string) (*Proxy, error) { return NewObserved(target, nil) }

// NewObserved is New with an observer: for every connection it accepts,
// the proxy calls observe once, and the function it returns with every
// chunk the client sends, in order, before the chunk is forwarded (to count
// or decode the client's messages, say). The chunk is only valid during
// the call.
func NewObserved(target string, observe func() func([]byte)) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, observe: observe, thawed: make(chan struct{}), conns: map[net.Conn]*link{},
		closing: make(chan struct{})}
	close(p.thawed)
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the host:port to connect to instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Freeze stops all forwarding; connections stay open and new ones are
// accepted but get no answer.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozen {
		p.frozen = true
		p.thawed = make(chan struct{})
	}
}

// Thaw resumes forwarding.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen {
		p.frozen = false
		close(p.thawed)
	}
}

// BlackHole makes every connection open now forward nothing, in either
// direction, until Close, while keeping its sockets open; even a client
// that closes its side is not passed on. Connections made afterwards work.
func (p *Proxy) BlackHole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.conns {
		select {
		case <-l.holed:
		default:
			close(l.holed)
		}
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if !p.closed {
		close(p.closing)
	}
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.Thaw()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

// gate blocks while the proxy is frozen, and for good (until Close) once
// l is black-holed; it reports whether forwarding may go on.
func (p *Proxy) gate(l *link) bool {
	p.mu.Lock()
	ch := p.thawed
	p.mu.Unlock()
	select {
	case <-ch:
	case <-l.holed:
	}
	select {
	case <-l.holed:
		<-p.closing
		return false
	default:
		return true
	}
}

func (p *Proxy) track(c net.Conn, l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = l
	return true
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		l := &link{holed: make(chan struct{})}
		if !p.track(client, l) {
			return
		}
		p.wg.Go(func() { p.serve(client, l) })
	}
}

func (p *Proxy) serve(client net.Conn, l *link) {
	if !p.gate(l) {
		_ = client.Close()
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(server, l) {
		_ = client.Close()
		return
	}
	var seen func([]byte)
	if p.observe != nil {
		seen = p.observe()
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(l, server, client, seen) })
	wg.Go(func() { p.pipe(l, client, server, nil) })
	wg.Wait()
}

// pipe copies src to dst, holding still while frozen or black-holed, and
// closes both when either side ends. seen, if not nil, sees what is
// forwarded.
func (p *Proxy) pipe(l *link, dst, src net.Conn, seen func([]byte)) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		if !p.gate(l) {
			return
		}
		n, err := src.Read(buf)
		// Checked after the read too, and before acting on its error: a
		// black-holed side's data and its closing are both swallowed.
		if !p.gate(l) {
			return
		}
		if n > 0 {
			if seen != nil {
				seen(buf[:n])
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // io.EOF or a closed connection: both sides are done
		}
	}
}
