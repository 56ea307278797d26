package nats

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/route"
)

// The defaults of Config's zero fields.
const (
	// DefaultStream is the default Config.Stream.
	DefaultStream = "PGRELAY"
	// DefaultDuplicateWindow is the default Config.DuplicateWindow:
	// JetStream's own default.
	DefaultDuplicateWindow = 2 * time.Minute
	// DefaultMaxPending is the default Config.MaxPending.
	DefaultMaxPending = 1000
	// DefaultTimeout is the default Config.Timeout.
	DefaultTimeout = 5 * time.Second
)

// DefaultSubjects returns the default Config.Subjects: every table's
// subject, "*.*.cdc_events" (route.All with the schema).
func DefaultSubjects() []string { return []string{"*." + route.All} }

// Config configures a Handler. Zero values mean the documented defaults.
type Config struct {
	// URL is the NATS server to connect to, nats://host:4222 (tls://, ws://
	// and wss:// too; user:password@ in it is used), or several separated
	// by commas. Required.
	URL string

	// Stream is the JetStream stream the events are published into.
	// Defaults to DefaultStream, "PGRELAY".
	Stream string

	// Subjects are the subjects of Stream, as NATS patterns. Defaults to
	// DefaultSubjects(), "*.*.cdc_events", which covers every table but no
	// custom event: to relay custom events, add subjects covering their
	// channels, such as "orders.*" (and keep "*.*.cdc_events"). JetStream
	// refuses subjects of one stream that overlap, so "orders.>", which
	// also matches "orders.x.cdc_events", cannot sit next to
	// "*.*.cdc_events": list the custom channels' shapes, or replace
	// "*.*.cdc_events" with the tables' schemas, "public.*.cdc_events". An
	// event
	// whose subject Stream does not cover fails with a permanent error
	// (relay.Permanent) naming the subject, so that the relay parks it in
	// cdc.failed_event rather than retrying it forever.
	//
	// The handler creates Stream with these subjects if it does not exist.
	// An existing stream keeps its configuration, except that subjects of
	// these it does not cover yet are added to it.
	Subjects []string

	// DuplicateWindow is the duplicate window of Stream when the handler
	// creates it: how long JetStream remembers a message id, and so for how
	// long after a crash a batch published again is dropped rather than
	// stored twice. An existing stream keeps its own window. Defaults to
	// DefaultDuplicateWindow (2 minutes).
	DuplicateWindow time.Duration

	// MaxPending bounds the publishes awaiting JetStream's acknowledgement:
	// the handler publishes asynchronously, and waits for the oldest once
	// this many are in flight. Defaults to DefaultMaxPending (1000).
	MaxPending int

	// Subject names the subject of an event. Defaults to
	// (*relay.Event).Channel: "<schema>.<table>.cdc_events", or a custom
	// event's channel.
	Subject func(*relay.Event) string

	// Timeout bounds connecting, each JetStream API request and the wait
	// for each publish's acknowledgement. Defaults to DefaultTimeout (5s).
	Timeout time.Duration
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if len(c.Subjects) == 0 {
		c.Subjects = DefaultSubjects()
	} else {
		c.Subjects = append([]string(nil), c.Subjects...)
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.Subject == nil {
		c.Subject = (*relay.Event).Channel
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// validate names the first field that is wrong.
func (c Config) validate() error {
	if c.URL == "" {
		return errors.New("nats handler: Config.URL is required")
	}
	for _, s := range strings.Split(c.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			// Not the parse error: it quotes the URL, password included.
			return fmt.Errorf("nats handler: Config.URL %q is not a URL", relay.RedactURL(s))
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("nats handler: Config.URL %q is not a nats://, tls://, ws:// or wss:// URL", u.Redacted())
		}
		if u.Host == "" {
			return fmt.Errorf("nats handler: Config.URL %q has no host", u.Redacted())
		}
	}
	if c.Stream != "" && strings.ContainsAny(c.Stream, " \t\r\n.*>/\\") {
		return fmt.Errorf("nats handler: Config.Stream %q contains whitespace, '.', '*', '>', '/' or '\\'", c.Stream)
	}
	for _, s := range c.Subjects {
		if !validSubject(s, true) {
			return fmt.Errorf("nats handler: Config.Subjects: %q is not a NATS subject pattern", s)
		}
	}
	if c.DuplicateWindow < 0 {
		return fmt.Errorf("nats handler: Config.DuplicateWindow %v is negative", c.DuplicateWindow)
	}
	if c.MaxPending < 0 {
		return fmt.Errorf("nats handler: Config.MaxPending %d is negative", c.MaxPending)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("nats handler: Config.Timeout %v is negative", c.Timeout)
	}
	return nil
}

// ConfigFromURL reads a Config from a sink URL as the command line gives
// it, nats://host:4222?stream=NAME. The query may set
//
//	stream=NAME            Config.Stream
//	subject=PATTERN        one of Config.Subjects (repeat it for more)
//	duplicate_window=2m    Config.DuplicateWindow (a Go duration)
//	max_pending=1000       Config.MaxPending
//	timeout=5s             Config.Timeout
//
// and is removed from Config.URL. Other parameters are an error, and the
// result is validated as New would.
func ConfigFromURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("nats handler: sink URL %q is not a URL", relay.RedactURL(raw))
	}
	q := u.Query()
	u.RawQuery = ""
	cfg := Config{URL: u.String()}
	for key, values := range q {
		v := values[len(values)-1]
		switch key {
		case "stream":
			cfg.Stream = v
		case "subject":
			cfg.Subjects = values
		case "duplicate_window":
			cfg.DuplicateWindow, err = time.ParseDuration(v)
		case "max_pending":
			cfg.MaxPending, err = strconv.Atoi(v)
		case "timeout":
			cfg.Timeout, err = time.ParseDuration(v)
		default:
			return Config{}, fmt.Errorf("nats handler: sink URL parameter %q is not one of stream, subject, duplicate_window, max_pending, timeout", key)
		}
		if err != nil {
			return Config{}, fmt.Errorf("nats handler: sink URL parameter %s: %w", key, err)
		}
	}
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// redactList returns a comma-separated list of server URLs with any
// password hidden, for error messages.
func redactList(list string) string {
	parts := strings.Split(list, ",")
	for i, s := range parts {
		parts[i] = relay.RedactURL(strings.TrimSpace(s))
	}
	return strings.Join(parts, ",")
}
