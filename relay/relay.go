// Package relay is pgrelay's daemon core: it delivers the changes captured in
// the outbox (see package sqlkit) to EventHandlers, at least once, in order,
// surviving disconnects, restarts and failing handlers.
//
// A Relay keeps three connections: one LISTENs for the capture trigger's
// notifications, one reads the outbox and records what was delivered, and a
// watchdog checks every WatchdogInterval that the database answers and that a
// NOTIFY it sends arrives on the LISTEN connection. When any of them fails,
// all are reconnected after RetryInterval. The outbox is the source of truth
// and a notification only a wake-up: after every (re)connection the relay
// first LISTENs, then delivers everything not yet delivered, so nothing
// committed while it was away is missed. Relays sharing a Config.Name take
// turns under a lease (lease.go): one delivers, the others stand by.
package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgrelay/pgrelay/sqlkit"
)

var (
	// ErrStarted is returned by Start and AddHandler once the relay has
	// been started.
	ErrStarted = errors.New("relay: already started")
	// ErrClosed is returned by Start after Close.
	ErrClosed = errors.New("relay: closed")
)

type state int

const (
	stateNew state = iota
	stateRunning
	stateClosed
)

// Relay delivers outbox events to its handlers. Create one with New, then
// either Run it, or Start it and Close it later.
type Relay struct {
	cfg      Config
	log      *slog.Logger
	pgConfig *pgx.ConnConfig
	// instance tells this relay's watchdog notifications from others'.
	instance string
	// polling is set while notifications cannot reach the relay.
	polling atomic.Bool
	// host and pid locate this process in cdc.relay_instance.
	host string
	pid  int
	// lease is this relay's hold on delivery for its name (lease.go).
	lease leaseState

	// Used by the delivery loop's goroutine only:
	// waiting: this relay has told writers to notify it (see
	// session.workLoop);
	waiting bool
	// lastLease: the lease this relay held last, to tell a reconnect
	// within the lease from a new one;
	lastLease sqlkit.Lease
	// steppedDown: it just lost the lease to another relay and said so;
	steppedDown bool
	// zombies: backends of its earlier sessions, for the next one to end.
	zombies []sqlkit.Backend

	// observeMu makes Config.Observer's calls one at a time.
	observeMu sync.Mutex

	mu       sync.Mutex
	state    state
	handlers []EventHandler
	stop     chan struct{}      // closed by Close: finish the current batch, then stop
	cancel   context.CancelFunc // aborts everything, when Close runs out of time
	done     chan struct{}      // closed when the delivery loop has exited
	fatal    error              // the error that ended the loop, if any

	closeOnce sync.Once
	closeErr  error
}

// New returns a relay for cfg delivering to handlers. It validates cfg but
// does not connect.
func New(cfg Config, handlers ...EventHandler) (*Relay, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pgConfig, err := pgx.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("Config.DatabaseURL: %w", err)
	}
	if pgConfig.ConnectTimeout == 0 || pgConfig.ConnectTimeout > cfg.Timeout {
		pgConfig.ConnectTimeout = cfg.Timeout
	}
	var id [4]byte
	_, _ = rand.Read(id[:])
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return &Relay{
		cfg:      cfg,
		log:      cfg.Logger,
		pgConfig: pgConfig,
		instance: hex.EncodeToString(id[:]),
		host:     host,
		pid:      os.Getpid(),
		handlers: append([]EventHandler(nil), handlers...),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}, nil
}

// AddHandler adds a handler. It must be called before Start.
func (r *Relay) AddHandler(h EventHandler) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != stateNew {
		return ErrStarted
	}
	r.handlers = append(r.handlers, h)
	return nil
}

// Start calls the handlers' OnStart, connects, and returns once the relay is
// listening and delivering in the background. It fails fast: if the first
// connection cannot be made, or the cdc schema is missing, it returns the
// error without retrying. Later disconnections are retried as Config says.
// ctx bounds only the start; the relay runs until Close.
func (r *Relay) Start(ctx context.Context) error {
	r.mu.Lock()
	switch r.state {
	case stateRunning:
		r.mu.Unlock()
		return ErrStarted
	case stateClosed:
		r.mu.Unlock()
		return ErrClosed
	}
	r.state = stateRunning
	handlers := r.handlers
	r.mu.Unlock()

	started := 0
	err := func() error {
		for _, h := range handlers {
			if err := h.OnStart(ctx); err != nil {
				return fmt.Errorf("start handler %T: %w", h, err)
			}
			started++
		}
		s, err := r.connect(ctx)
		if err != nil {
			return err
		}
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r.mu.Lock()
		r.cancel = cancel
		r.mu.Unlock()
		go r.loop(runCtx, s)
		return nil
	}()
	if err != nil {
		r.mu.Lock()
		r.state = stateClosed
		r.mu.Unlock()
		close(r.done)
		for _, h := range handlers[:started] {
			_ = h.OnClose(context.WithoutCancel(ctx))
		}
		r.closeOnce.Do(func() {})
		return err
	}
	r.log.Debug("relay started", "database", RedactURL(r.cfg.DatabaseURL), "name", r.cfg.Name,
		"takeover_bound", r.cfg.TakeoverBound())
	return nil
}

// Run starts the relay and delivers until ctx ends or the relay gives up,
// then closes it, waiting up to Config.Timeout for the batch in flight. It
// returns nil after a shutdown through ctx, and the last error when
// reconnection attempts are exhausted and Config.OnError is not set.
func (r *Relay) Run(ctx context.Context) error {
	if err := r.Start(ctx); err != nil {
		if ctx.Err() != nil {
			// Stopped while starting (connecting, say): a shutdown
			// through ctx like any other, not a failure. relay run
			// --drain on an empty backlog stops this early.
			return nil
		}
		return err
	}
	select {
	case <-ctx.Done():
	case <-r.done:
	}
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
	defer cancel()
	closeErr := r.Close(closeCtx)
	r.mu.Lock()
	fatal := r.fatal
	r.mu.Unlock()
	if fatal != nil {
		return fatal
	}
	return closeErr
}

// Done returns a channel that is closed when the relay has stopped
// delivering: after Close, or when it gave up reconnecting.
func (r *Relay) Done() <-chan struct{} { return r.done }

// Close stops the relay: it lets the batch in flight finish (its events are
// then recorded as delivered), or abandons it when ctx ends first (its
// events will be delivered again), closes the connections, and calls the
// handlers' OnClose once. No goroutine of the relay outlives Close. It is
// safe to call more than once and from several goroutines.
func (r *Relay) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		wasRunning := r.state == stateRunning
		r.state = stateClosed
		cancel := r.cancel
		handlers := r.handlers
		r.mu.Unlock()
		if !wasRunning {
			return
		}
		close(r.stop)
		select {
		case <-r.done:
		case <-ctx.Done():
			cancel()
			<-r.done
		}
		cancel()
		// OnClose gets its own Timeout even when ctx has run out, so that
		// handlers can still flush.
		closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
		defer cancelClose()
		var errs []error
		for _, h := range handlers {
			if err := h.OnClose(closeCtx); err != nil {
				errs = append(errs, fmt.Errorf("close handler %T: %w", h, err))
			}
		}
		r.closeErr = errors.Join(errs...)
		r.log.Info("relay stopped")
		r.observe(Activity{Kind: ActivityStopped})
	})
	return r.closeErr
}

// loop runs sessions until Close, reconnecting after failures.
func (r *Relay) loop(ctx context.Context, s *session) {
	defer close(r.done)
	for {
		err := s.run(ctx)
		if err == nil {
			s.release()
		}
		s.close()
		if err == nil || r.stopping(ctx) {
			return
		}
		// A relay that lost its lease steps down at once, with one line,
		// and stands by on fresh connections.
		lost := errors.Is(err, sqlkit.ErrLeaseLost)
		r.observe(Activity{Kind: ActivityDisconnected, Err: err, Reason: disconnectReason(err)})
		if lost {
			r.log.Warn("another relay took over delivery for this name; standing by", "name", r.cfg.Name)
			r.steppedDown, r.waiting = true, false
		} else {
			r.log.Warn("connection lost; reconnecting", "err", err, "retry_interval", r.cfg.RetryInterval)
		}
		s = nil
		for attempt := 1; s == nil; attempt++ {
			if (!lost || attempt > 1) && !r.sleep(ctx, r.cfg.RetryInterval) {
				return
			}
			s, err = r.connect(ctx)
			if err != nil {
				r.log.Warn("reconnect failed", "attempt", attempt, "err", err)
				r.observe(Activity{Kind: ActivityReconnectFailed, Err: err, Reason: disconnectReason(err)})
				if r.cfg.RetryAttempts > 0 && attempt >= r.cfg.RetryAttempts {
					r.giveUp(fmt.Errorf("giving up after %d reconnection attempts: %w", attempt, err))
					return
				}
				continue
			}
			if !lost {
				r.log.Info("reconnected", "attempt", attempt)
			}
		}
	}
}

func (r *Relay) giveUp(err error) {
	r.log.Error("relay stopped", "err", err)
	r.observe(Activity{Kind: ActivityStopped, Err: err})
	if r.cfg.OnError != nil {
		r.cfg.OnError(err)
		return
	}
	r.mu.Lock()
	r.fatal = err
	r.mu.Unlock()
}

// stopping reports whether Close has been called or the relay aborted.
func (r *Relay) stopping(ctx context.Context) bool {
	select {
	case <-r.stop:
		return true
	default:
		return ctx.Err() != nil
	}
}

// sleep waits for d, returning false if the relay is stopping first.
func (r *Relay) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.stop:
		return false
	case <-ctx.Done():
		return false
	}
}
