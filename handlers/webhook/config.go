package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/pgrelay/pgrelay/relay"
)

// Defaults of the Config fields.
const (
	// DefaultBatchSize is the default Config.BatchSize.
	DefaultBatchSize = 100
	// DefaultTimeout is the default Config.Timeout.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxRetryWait is the default Config.MaxRetryWait.
	DefaultMaxRetryWait = 30 * time.Second
)

// Config configures a Handler. Zero values mean the documented defaults.
type Config struct {
	// URL is the endpoint every batch is POSTed to: http:// or https://
	// with a host. Required. Its query string is sent as it is. It is
	// never logged or put in an error with its password (see
	// relay.RedactURL).
	URL string

	// BatchSize is the most events per POST. A relay batch larger than
	// this is split into POSTs of at most BatchSize events, sent in order,
	// one at a time. Defaults to DefaultBatchSize (100).
	BatchSize int

	// Secret, if set, signs every request: the header
	// "X-Pgrelay-Signature: sha256=<hex>" carries the HMAC-SHA256, keyed
	// with Secret, of the exact body bytes. Optional.
	Secret string

	// Timeout bounds each POST, from connecting to reading the answer. A
	// POST that times out is retried. Defaults to DefaultTimeout (10s).
	Timeout time.Duration

	// MaxRetryWait caps how long the handler waits, when an endpoint
	// answers 408, 429 or 5xx with a Retry-After header, before it
	// returns the error that makes the relay retry. Defaults to
	// DefaultMaxRetryWait (30s).
	MaxRetryWait time.Duration

	// Client sends the requests. Defaults to a client with Timeout that
	// does not follow redirects (a 301, 302 or 303 would be resent as a
	// GET without the body, and its 2xx would count as delivered). Each
	// request is bounded by Timeout through its context either way.
	Client *http.Client

	// Header holds extra headers sent with every request, such as
	// Authorization. Content-Type, X-Pgrelay-Signature,
	// X-Pgrelay-Delivery and Idempotency-Key are set by the handler and
	// override any given here. Optional.
	Header http.Header
}

// ConfigFromURL returns the Config of a webhook sink given as a URL on the
// command line (--sink https://…): the URL itself, query string included,
// with every other field at its default.
func ConfigFromURL(raw string) (Config, error) {
	c := Config{URL: raw}
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxRetryWait == 0 {
		c.MaxRetryWait = DefaultMaxRetryWait
	}
	if c.Client == nil {
		c.Client = &http.Client{
			Timeout: c.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	c.Header = c.Header.Clone()
	return c
}

// validate names the first field that is wrong.
func (c Config) validate() error {
	if c.URL == "" {
		return errors.New("webhook handler: Config.URL is required")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("webhook handler: Config.URL %q does not parse", relay.RedactURL(c.URL))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook handler: Config.URL %q is not http:// or https:// with a host", relay.RedactURL(c.URL))
	}
	if c.BatchSize < 0 {
		return fmt.Errorf("webhook handler: Config.BatchSize must not be negative, got %d", c.BatchSize)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("webhook handler: Config.Timeout must not be negative, got %s", c.Timeout)
	}
	if c.MaxRetryWait < 0 {
		return fmt.Errorf("webhook handler: Config.MaxRetryWait must not be negative, got %s", c.MaxRetryWait)
	}
	return nil
}
