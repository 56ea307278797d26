package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
)

// statementCounter is a TCP proxy in front of PostgreSQL that counts what
// its clients send, by reading the frontend side of the wire protocol: each
// Query message (simple protocol, one query string, which may hold several
// statements) and each Execute message (extended protocol, one prepared
// statement run) is one statement sent. Pings (an empty query) count too:
// they are round trips the server answers all the same.
type statementCounter struct {
	ln     net.Listener
	target string

	queries  atomic.Int64 // Query messages
	executes atomic.Int64 // Execute messages
	conns    atomic.Int64 // connections accepted

	mu      sync.Mutex
	err     error // the first connection the counter could not read
	open    map[net.Conn]bool
	closing bool
	wg      sync.WaitGroup
}

// The codes of the untyped messages a connection can start with.
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
)

// newStatementCounter starts a counter on a free port of 127.0.0.1 in front
// of the server that dbURL names and returns it with the URL to connect to
// instead. That URL asks for no TLS: the counter can read only plaintext.
func newStatementCounter(dbURL string) (*statementCounter, string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return nil, "", fmt.Errorf("database URL must be a postgres:// URL: %w", err)
	}
	q := u.Query()
	switch q.Get("sslmode") {
	case "require", "verify-ca", "verify-full":
		return nil, "", errors.New("counting statements needs a plaintext connection, and the database URL requires TLS")
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	c := &statementCounter{ln: ln, target: target, open: map[net.Conn]bool{}}
	c.wg.Go(c.accept)
	u.Host = ln.Addr().String()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return c, u.String(), nil
}

// statements returns how many statements the clients have sent so far.
func (c *statementCounter) statements() int64 { return c.queries.Load() + c.executes.Load() }

// failure returns the first error met reading a client's messages: from
// then on the counts are too low.
func (c *statementCounter) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// close stops accepting, closes every connection and waits for the
// forwarding goroutines.
func (c *statementCounter) close() {
	c.mu.Lock()
	c.closing = true
	for conn := range c.open {
		_ = conn.Close()
	}
	c.mu.Unlock()
	_ = c.ln.Close()
	c.wg.Wait()
}

// track registers a connection for close, or reports false after close.
func (c *statementCounter) track(conns ...net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	for _, conn := range conns {
		c.open[conn] = true
	}
	return true
}

func (c *statementCounter) accept() {
	for {
		client, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.conns.Add(1)
		c.wg.Go(func() { c.serve(client) })
	}
}

// serve forwards one connection: the server's side as it comes, the
// client's message by message, counting.
func (c *statementCounter) serve(client net.Conn) {
	server, err := net.Dial("tcp", c.target)
	if err != nil {
		_ = client.Close()
		return
	}
	if !c.track(client, server) {
		_ = client.Close()
		_ = server.Close()
		return
	}
	var done sync.WaitGroup
	done.Go(func() {
		_, _ = io.Copy(client, server)
		_ = client.Close()
	})
	if err := c.forward(server, client); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.mu.Lock()
		if c.err == nil && !c.closing {
			c.err = err
		}
		c.mu.Unlock()
	}
	_ = server.Close()
	done.Wait()
	c.mu.Lock()
	delete(c.open, client)
	delete(c.open, server)
	c.mu.Unlock()
}

// forward copies the client's messages to the server, counting Query and
// Execute messages. A connection starts with untyped messages (a length,
// then the body): the startup message, or a cancel request, or a TLS or
// GSS encryption request, which the counter refuses to pass on since it
// could not read what follows. Every later message is a type byte and a
// length.
func (c *statementCounter) forward(server, client net.Conn) error {
	r := bufio.NewReader(client)
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return err
	}
	n := int64(binary.BigEndian.Uint32(hdr[:4]))
	if n < 8 {
		return fmt.Errorf("statement counter: start-up message of %d bytes", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return err
	}
	switch binary.BigEndian.Uint32(body[:4]) {
	case sslRequestCode, gssEncRequestCode:
		return errors.New("statement counter: the client asked for an encrypted connection")
	}
	if _, err := server.Write(append(hdr[:4:4], body...)); err != nil {
		return err
	}
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		switch hdr[0] {
		case 'Q':
			c.queries.Add(1)
		case 'E':
			c.executes.Add(1)
		}
		n := int64(binary.BigEndian.Uint32(hdr[1:]))
		if n < 4 {
			return fmt.Errorf("statement counter: message %q of length %d", hdr[0], n)
		}
		if _, err := server.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := io.CopyN(server, r, n-4); err != nil {
			return err
		}
	}
}
