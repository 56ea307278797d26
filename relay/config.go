package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults for the Config fields left at their zero value.
const (
	DefaultName             = "default"
	DefaultBatchSize        = 1000
	DefaultRetryInterval    = 5 * time.Second
	DefaultWatchdogInterval = 5 * time.Second
	DefaultTimeout          = 5 * time.Second
	DefaultPollInterval     = 30 * time.Second
	DefaultRetention        = 24 * time.Hour
	DefaultMaxAttempts      = 3
	// MaxBatchSize bounds BatchSize so that one batch's events stay well
	// inside memory and a single Redis pipeline.
	MaxBatchSize = 100_000
)

// Config configures a Relay. Zero values mean the documented defaults.
type Config struct {
	// DatabaseURL is the PostgreSQL connection string (URL or key=value
	// form). Required.
	DatabaseURL string

	// Name identifies this relay's delivery position in cdc.relay_cursor.
	// Relays with the same name share one position, and only one of them
	// delivers at a time, holding a lease on that row: the others stand by
	// and take over when it goes away, within TakeoverBound. Relays with
	// different names each receive every event. Defaults to DefaultName
	// ("default").
	Name string

	// BatchSize is the most events fetched from the outbox and handed to
	// the handlers at once. Defaults to DefaultBatchSize (1000).
	BatchSize int

	// RetryAttempts is how many consecutive failed reconnection attempts
	// are made before giving up; 0 or less retries forever. Defaults to 0.
	RetryAttempts int

	// RetryInterval is the wait before each reconnection attempt, the
	// longest wait between retries of a failing handler, and between a
	// standby's tries to take over. Defaults to DefaultRetryInterval (5s).
	RetryInterval time.Duration

	// WatchdogInterval is how often the watchdog checks, over its own
	// connection, that the database answers and that a NOTIFY it sends
	// arrives on the LISTEN connection; each check renews the active
	// relay's lease. Defaults to DefaultWatchdogInterval (5s).
	WatchdogInterval time.Duration

	// Timeout bounds every database round trip: connecting, each watchdog
	// check and each outbox query. The server is told to drop the relay's
	// connections as fast when the relay vanishes (TCP keepalive and user
	// timeout, idle transactions). Defaults to DefaultTimeout (5s).
	Timeout time.Duration

	// PollInterval is how often the outbox is read even when no
	// notification arrived. Notifications make delivery immediate; the
	// poll is a safety net. Defaults to DefaultPollInterval (30s).
	PollInterval time.Duration

	// Retention is how long delivered events stay in the outbox. The
	// relay deletes older ones in small batches while idle, once every
	// relay name recorded in cdc.relay_cursor has delivered them; writers
	// never do cleanup work. Negative keeps events forever. Defaults to
	// DefaultRetention (24h).
	Retention time.Duration

	// MaxAttempts is how many times an event is offered to a handler that
	// refuses it with a Permanent error before the event is parked in
	// cdc.failed_event (see `relay status` and `relay retry-failed`) and
	// the next one delivered. Other errors are retried forever: an event is
	// never skipped for them. Defaults to DefaultMaxAttempts (3).
	MaxAttempts int

	// OnError, if set, is called once with the last error when
	// RetryAttempts are exhausted; the relay then stops and Run returns
	// nil. Without it, Run returns that error. It is called from the
	// relay's goroutine and must not call Close.
	OnError func(error)

	// Logger receives the relay's logs. Defaults to discarding them.
	Logger *slog.Logger

	// Observer, if set, receives every Activity of the relay as it
	// happens: batches, reconnects, leadership, polling, parked events
	// (package metrics turns them into Prometheus metrics). It is called
	// from the relay's goroutines, one call at a time per relay, and must
	// return quickly. Defaults to none.
	Observer func(Activity)
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.WatchdogInterval == 0 {
		c.WatchdogInterval = DefaultWatchdogInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate reports the first invalid field, by name.
func (c Config) validate() error {
	if c.DatabaseURL == "" {
		return errors.New("Config.DatabaseURL is required")
	}
	if _, err := pgx.ParseConfig(c.DatabaseURL); err != nil {
		return fmt.Errorf("Config.DatabaseURL: %w", err)
	}
	if c.BatchSize < 1 || c.BatchSize > MaxBatchSize {
		return fmt.Errorf("Config.BatchSize must be between 1 and %d, got %d", MaxBatchSize, c.BatchSize)
	}
	if c.MaxAttempts < 1 {
		return fmt.Errorf("Config.MaxAttempts must be at least 1, got %d", c.MaxAttempts)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"RetryInterval", c.RetryInterval},
		{"WatchdogInterval", c.WatchdogInterval},
		{"Timeout", c.Timeout},
		{"PollInterval", c.PollInterval},
	} {
		if d.v < 0 {
			return fmt.Errorf("Config.%s must not be negative, got %s", d.name, d.v)
		}
	}
	return nil
}
