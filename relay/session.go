package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// ErrWatchdog is wrapped by the error that ends a session when the
// watchdog's check fails.
var ErrWatchdog = errors.New("watchdog check failed")

// errHandlerConnect wraps a handler's OnConnect error.
var errHandlerConnect = errors.New("a handler could not connect")

// errStopped ends a session because Close was called.
var errStopped = errors.New("relay stopping")

// session is one set of connections, from connect until the first failure.
type session struct {
	r        *Relay
	listen   *pgx.Conn // LISTENs; only the listener goroutine reads from it
	worker   *pgx.Conn // reads the outbox and saves the cursor
	watchdog *pgx.Conn // the watchdog's probes

	wake  chan struct{} // a notification arrived; capacity 1, so wake-ups fold
	pongs chan uint64   // the watchdog's probes, as the listener received them

	// backends are the server processes of the connections, in the order
	// opened; direct is set once LISTEN was seen to work on them (no
	// pooler in between), so that they are this relay's own.
	backends []sqlkit.Backend
	direct   atomic.Bool

	cursor    sqlkit.Cursor
	snap      sqlkit.Snapshot      // the last read's, for watch
	lastRead  time.Duration        // how long the last read and delivery took
	ended     string               // the instance whose backends endBackendsOf ended
	ahead     *sqlkit.Batch        // fetched while the previous batch was delivered
	parked    []sqlkit.ParkedEvent // given up on in the current batch
	lastPrune time.Time
	// Two row buffers, reused: one being delivered, one being fetched.
	rows, spare []sqlkit.Row
	events      []Event
}

// connect opens the session's connections, LISTENs before anything is
// read, so that nothing committed from then on can go unnoticed, and calls
// the handlers' OnConnect. The backlog is delivered by run.
func (r *Relay) connect(ctx context.Context) (*session, error) {
	s := &session{r: r, wake: make(chan struct{}, 1), pongs: make(chan uint64, 8)}
	if err := s.open(ctx); err != nil {
		s.close()
		return nil, err
	}
	r.observe(Activity{Kind: ActivityConnected})
	return s, nil
}

func (s *session) open(ctx context.Context) (err error) {
	r := s.r
	type opened struct {
		conn    *pgx.Conn
		backend sqlkit.Backend
		err     error
	}
	open := func(role string) (o opened) {
		cfg := r.pgConfig.Copy()
		cfg.RuntimeParams["application_name"] = "pgrelay " + role
		ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return opened{err: fmt.Errorf("connect to %s: %w", RedactURL(r.cfg.DatabaseURL), err)}
		}
		b, err := sqlkit.BackendOf(ctx, c)
		if err != nil {
			_ = c.Close(ctx)
			return opened{err: err}
		}
		return opened{conn: c, backend: b}
	}
	// The worker's and the watchdog's connections are opened while the
	// listener's is, and LISTENs: a connection takes a few milliseconds,
	// which a relay starting on a backlog (or reconnecting) would otherwise
	// wait three times over. Nothing is read before LISTEN is in place.
	var (
		others [2]opened
		wg     sync.WaitGroup
	)
	for i, role := range []string{"worker", "watchdog"} {
		wg.Go(func() { others[i] = open(role) })
	}
	listener := open("listener")
	if listener.err == nil {
		s.listen = listener.conn
		tctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		listener.err = sqlkit.CheckSchema(tctx, s.listen)
		if listener.err == nil {
			listener.err = sqlkit.Listen(tctx, s.listen)
		}
		cancel()
	}
	wg.Wait()
	// Set even when something failed, so that close closes them.
	s.worker, s.watchdog = others[0].conn, others[1].conn
	for _, o := range []opened{listener, others[0], others[1]} {
		if o.err != nil {
			return o.err
		}
		s.backends = append(s.backends, o.backend)
	}
	if err := s.checkEcho(ctx); err != nil {
		return err
	}
	if s.direct.Load() {
		for _, c := range []*pgx.Conn{s.listen, s.worker, s.watchdog} {
			tctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
			err := sqlkit.SetupSession(tctx, c, r.cfg.Timeout)
			cancel()
			if err != nil {
				return err
			}
		}
	}
	r.mu.Lock()
	handlers := r.handlers
	r.mu.Unlock()
	for _, h := range handlers {
		if err := h.OnConnect(ctx); err != nil {
			return fmt.Errorf("%w: handler %T OnConnect: %w", errHandlerConnect, h, err)
		}
	}
	return nil
}

// close closes the connections, bounded by the timeout so that a frozen
// network cannot hold up a reconnect. Their backends are remembered: if the
// network was cut, the server may keep them running, and the next session
// ends them.
func (s *session) close() {
	s.r.lease.drop()
	if s.direct.Load() {
		s.r.zombies = append(s.r.zombies, s.backends...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.r.cfg.Timeout)
	defer cancel()
	for _, c := range []*pgx.Conn{s.listen, s.worker, s.watchdog} {
		if c != nil {
			_ = c.Close(ctx)
		}
	}
}

// run delivers until the first failure, which it returns, or until Close,
// when it returns nil.
func (s *session) run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.listenLoop(ctx); err != nil {
			cancel(err)
		}
	})
	wg.Go(func() {
		if err := s.watchdogLoop(ctx); err != nil {
			cancel(err)
		}
	})
	err := s.workLoop(ctx)
	if err == nil {
		err = errStopped
	}
	cancel(err)
	wg.Wait()
	if cause := context.Cause(ctx); !errors.Is(cause, errStopped) {
		return cause
	}
	return nil
}
