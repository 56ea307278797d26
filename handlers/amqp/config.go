package amqp

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/pgrelay/pgrelay/relay"
)

// DefaultExchange is the default Config.Exchange.
const DefaultExchange = "pgrelay"

// DefaultTimeout is the default Config.Timeout.
const DefaultTimeout = 5 * time.Second

// Config configures a Handler. Zero values mean the documented defaults.
type Config struct {
	// URL is the broker, amqp://user:password@host:port/vhost or amqps://
	// for TLS. Required. The password never appears in the handler's
	// errors.
	URL string

	// Exchange is the durable topic exchange events are published to,
	// declared at connect if missing. Declaring an existing exchange of
	// another type or durability fails the connection. Defaults to
	// DefaultExchange ("pgrelay").
	Exchange string

	// RoutingKey names the routing key of an event. Defaults to
	// DefaultRoutingKey: "<schema>.<table>.<action>", for example
	// "public.users.insert", and for a custom event (relay.ActionMessage)
	// the channel it was published on, verbatim. A queue bound with "#"
	// gets every event, "public.users.*" one table's, "*.*.delete" every
	// delete. A schema or table name with a dot in it makes more words.
	RoutingKey func(*relay.Event) string

	// Timeout bounds connecting (TCP, TLS and the AMQP handshake) and the
	// wait for one batch's publisher confirms. A batch not confirmed in
	// time is an error, and the relay retries it. Defaults to
	// DefaultTimeout (5s).
	Timeout time.Duration
}

// DefaultRoutingKey is the default Config.RoutingKey:
// "<schema>.<table>.<action>", or a custom event's channel.
func DefaultRoutingKey(e *relay.Event) string {
	if e.Action == relay.ActionMessage {
		return e.CustomChannel
	}
	return e.Schema + "." + e.Table + "." + string(e.Action)
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Exchange == "" {
		c.Exchange = DefaultExchange
	}
	if c.RoutingKey == nil {
		c.RoutingKey = DefaultRoutingKey
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// validate names the first field that is wrong.
func (c Config) validate() error {
	if c.URL == "" {
		return errors.New("amqp handler: Config.URL is required")
	}
	u, err := parseURL(c.URL)
	if err != nil {
		return fmt.Errorf("amqp handler: Config.URL: %w", err)
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return fmt.Errorf("amqp handler: Config.URL %s: the scheme is not amqp or amqps", relay.RedactURL(c.URL))
	}
	if u.Host == "" {
		return fmt.Errorf("amqp handler: Config.URL %s: no host", relay.RedactURL(c.URL))
	}
	if c.Timeout < 0 {
		return fmt.Errorf("amqp handler: Config.Timeout %s is negative", c.Timeout)
	}
	return nil
}

// parseURL parses raw without letting its password into the error:
// url.Parse's errors quote the whole URL.
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, fmt.Errorf("unparsable URL: %w", ue.Err)
		}
		return nil, errors.New("unparsable URL")
	}
	return u, nil
}

// ConfigFromURL reads a sink URL as the command line gives it,
// amqp://user:password@host:5672/vhost?exchange=NAME: the exchange query
// parameter is Config.Exchange (default DefaultExchange), and the URL
// without it, other parameters kept (amqp091's heartbeat,
// connection_timeout, TLS files), is Config.URL. The Config is validated.
func ConfigFromURL(raw string) (Config, error) {
	u, err := parseURL(raw)
	if err != nil {
		return Config{}, fmt.Errorf("amqp sink: %w", err)
	}
	q := u.Query()
	cfg := Config{Exchange: q.Get("exchange")}
	if q.Has("exchange") {
		if cfg.Exchange == "" {
			return Config{}, fmt.Errorf("amqp sink %s: exchange is empty", relay.RedactURL(raw))
		}
		q.Del("exchange")
		u.RawQuery = q.Encode()
	}
	cfg.URL = u.String()
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// scrub removes the password of rawURL from err's text, keeping err
// underneath for errors.Is and errors.As.
func scrub(err error, rawURL string) error {
	if err == nil {
		return nil
	}
	u, perr := url.Parse(rawURL)
	if perr != nil || u.User == nil {
		return err
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" || !strings.Contains(err.Error(), pw) {
		return err
	}
	return &scrubbed{err: err, text: strings.ReplaceAll(err.Error(), pw, "xxxxx")}
}

type scrubbed struct {
	err  error
	text string
}

func (s *scrubbed) Error() string { return s.text }
func (s *scrubbed) Unwrap() error { return s.err }
