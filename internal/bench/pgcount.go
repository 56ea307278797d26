package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"

	"github.com/pgrelay/pgrelay/internal/faultproxy"
)

// statementCounter counts what clients send PostgreSQL through a proxy in
// front of it (faultproxy, observing the client side of the wire protocol):
// each Query message (simple protocol, one query string, which may hold
// several statements) and each Execute message (extended protocol, one
// prepared statement run) is one statement sent. Pings (an empty query)
// count too: they are round trips the server answers all the same.
type statementCounter struct {
	proxy *faultproxy.Proxy

	queries  atomic.Int64 // Query messages
	executes atomic.Int64 // Execute messages
	conns    atomic.Int64 // connections accepted

	mu  sync.Mutex
	err error // the first reason the counts may be wrong
}

// The codes of the untyped messages that ask for an encrypted connection.
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
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
	c := &statementCounter{}
	c.proxy, err = faultproxy.NewObserved(target, func() func([]byte) {
		c.conns.Add(1)
		return (&messageScanner{c: c}).feed
	})
	if err != nil {
		return nil, "", err
	}
	u.Host = c.proxy.Addr()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return c, u.String(), nil
}

// failure returns the first reason the counts may be too low.
func (c *statementCounter) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *statementCounter) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// close stops the proxy and its connections.
func (c *statementCounter) close() { _ = c.proxy.Close() }

// messageScanner follows one connection's client messages across the
// chunks the proxy sees. A connection starts with untyped messages (a
// length, then a code and the rest): the startup message, a cancel request,
// or a TLS or GSS encryption request, after which the counter cannot read
// what follows. Every later message is a type byte and a length.
type messageScanner struct {
	c       *statementCounter
	started bool   // past the untyped start-up message
	hdr     []byte // the header read so far
	skip    int64  // body bytes of the current message still to pass
}

// feed scans the next chunk the client sent.
func (s *messageScanner) feed(b []byte) {
	for len(b) > 0 {
		if s.skip > 0 {
			n := min(int64(len(b)), s.skip)
			s.skip, b = s.skip-n, b[n:]
			continue
		}
		need := 5 // type, length
		if !s.started {
			need = 8 // length, code
		}
		take := min(need-len(s.hdr), len(b))
		s.hdr, b = append(s.hdr, b[:take]...), b[take:]
		if len(s.hdr) < need {
			return
		}
		var n int64
		if s.started {
			switch s.hdr[0] {
			case 'Q':
				s.c.queries.Add(1)
			case 'E':
				s.c.executes.Add(1)
			}
			n = int64(binary.BigEndian.Uint32(s.hdr[1:])) - 4
		} else {
			switch binary.BigEndian.Uint32(s.hdr[4:]) {
			case sslRequestCode, gssEncRequestCode:
				s.c.fail(errors.New("statement counter: a client asked for an encrypted connection"))
			}
			n = int64(binary.BigEndian.Uint32(s.hdr[:4])) - 8
			s.started = true
		}
		if n < 0 {
			s.c.fail(fmt.Errorf("statement counter: a message of %d bytes", n))
			n = 0
		}
		s.skip, s.hdr = n, s.hdr[:0]
	}
}
