package sse

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of the Config fields.
const (
	// DefaultRetention is the default Config.Retention.
	DefaultRetention = 24 * time.Hour
	// DefaultHeartbeat is the default Config.Heartbeat.
	DefaultHeartbeat = 15 * time.Second
	// DefaultClientBuffer is the default Config.ClientBuffer.
	DefaultClientBuffer = 1024
	// DefaultWriteTimeout is the default Config.WriteTimeout.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultPruneInterval is the default Config.PruneInterval.
	DefaultPruneInterval = time.Minute
)

// Config configures a Handler. Zero values mean the documented defaults.
type Config struct {
	// Pool is the PostgreSQL pool of the log table, cdc.sse_log, which
	// OnStart creates if missing (the role needs CREATE on schema cdc, or
	// an administrator creates the table: see the README). Required.
	Pool *pgxpool.Pool

	// Addr is the address the caller serves the handler on, such as
	// 127.0.0.1:8080. It is only checked: a non-loopback address (an
	// empty host included) needs a Token. Optional: empty means the caller
	// vouches for it (for example an httptest server).
	Addr string

	// Token, if set, is required of every /events request, as
	// "Authorization: Bearer <token>" or "?token=<token>" (for browsers'
	// EventSource, which cannot set headers). Optional on loopback.
	Token string

	// Retention is how long positions are kept in the log, and so how long
	// a client can resume with Last-Event-ID. Negative keeps them forever.
	// Defaults to DefaultRetention (24h).
	Retention time.Duration

	// PruneInterval is how often rows older than Retention are deleted.
	// Defaults to DefaultPruneInterval (1m).
	PruneInterval time.Duration

	// Heartbeat is how often an idle stream gets a ": keepalive" comment.
	// Defaults to DefaultHeartbeat (15s).
	Heartbeat time.Duration

	// ClientBuffer is how many messages a client may be behind before it
	// is disconnected, so that a slow client never slows the relay or the
	// other clients. Defaults to DefaultClientBuffer (1024).
	ClientBuffer int

	// WriteTimeout bounds each write to a client. Defaults to
	// DefaultWriteTimeout (10s).
	WriteTimeout time.Duration
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.PruneInterval == 0 {
		c.PruneInterval = DefaultPruneInterval
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.ClientBuffer == 0 {
		c.ClientBuffer = DefaultClientBuffer
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	return c
}

// validate names the first field that is wrong.
func (c Config) validate() error {
	if c.Pool == nil {
		return errors.New("sse handler: Config.Pool is required")
	}
	if c.Addr != "" && c.Token == "" && !loopback(c.Addr) {
		return fmt.Errorf("sse handler: Config.Addr %q is not a loopback address: set Config.Token (--sse-token) to serve events on it", c.Addr)
	}
	if c.PruneInterval < 0 {
		return fmt.Errorf("sse handler: Config.PruneInterval must not be negative, got %s", c.PruneInterval)
	}
	if c.Heartbeat < 0 {
		return fmt.Errorf("sse handler: Config.Heartbeat must not be negative, got %s", c.Heartbeat)
	}
	if c.ClientBuffer < 0 {
		return fmt.Errorf("sse handler: Config.ClientBuffer must not be negative, got %d", c.ClientBuffer)
	}
	if c.WriteTimeout < 0 {
		return fmt.Errorf("sse handler: Config.WriteTimeout must not be negative, got %s", c.WriteTimeout)
	}
	return nil
}

// loopback reports whether addr (host:port) only listens on loopback.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
