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

// connect opens the session's connections: LISTEN first, so that nothing
// committed from then on can go unnoticed, then the others, then the
// handlers' OnConnect. The backlog is delivered by run.
func (r *Relay) connect(ctx context.Context) (*session, error) {
	s := &session{r: r, wake: make(chan struct{}, 1), pongs: make(chan uint64, 8)}
	if err := s.open(ctx); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *session) open(ctx context.Context) (err error) {
	r := s.r
	open := func(role string) (*pgx.Conn, error) {
		cfg := r.pgConfig.Copy()
		cfg.RuntimeParams["application_name"] = "pgrelay " + role
		ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", RedactURL(r.cfg.DatabaseURL), err)
		}
		b, err := sqlkit.BackendOf(ctx, c)
		if err != nil {
			_ = c.Close(ctx)
			return nil, err
		}
		s.backends = append(s.backends, b)
		return c, nil
	}
	if s.listen, err = open("listener"); err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	if err := sqlkit.CheckSchema(tctx, s.listen); err != nil {
		return err
	}
	if err := sqlkit.Listen(tctx, s.listen); err != nil {
		return err
	}
	if s.worker, err = open("worker"); err != nil {
		return err
	}
	if s.watchdog, err = open("watchdog"); err != nil {
		return err
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
			return fmt.Errorf("handler %T OnConnect: %w", h, err)
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

// workLoop delivers the backlog, then each wake-up's new events, until the
// session fails (error) or the relay is closed (nil).
//
// While it finds events it keeps reading, and tells writers not to notify
// (sqlkit.LeaveWaiting): NOTIFY serialises concurrent commits. Before it
// sleeps it asks for notifications again (sqlkit.EnterWaiting), then makes
// sure that no writer that decided not to notify is still in flight: such a
// writer holds its lock on the outbox until its rows are visible, so once
// none is left, one more read finds everything and a notification will
// announce anything newer.
func (s *session) workLoop(ctx context.Context) error {
	r := s.r
	s.endOwnZombies(ctx)
	if err := s.acquire(ctx); err != nil || r.stopping(ctx) {
		return err
	}
	defer s.leaveWaiting()
	if err := s.resetWaiting(ctx); err != nil {
		return err
	}
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	// settled: since this relay last entered the waiting state, no writer
	// was in flight and the outbox was read after that; from then on,
	// notifications announce every new event.
	settled := false
	backoff := time.Duration(0)
	// lingerUntil: writers were busy a moment ago; until then the relay
	// watches the outbox itself instead of asking them to notify.
	var lingerUntil time.Time
	for {
		if r.stopping(ctx) {
			return nil
		}
		began := time.Now()
		res, err := s.deliverBatch(ctx)
		if err != nil {
			return err
		}
		s.lastRead = time.Since(began)
		if res.events > 0 || res.full {
			// Several transactions in one batch, or events while
			// lingering: writers are busy. NOTIFY would serialise their
			// commits, so stop asking for it, and watch for a while.
			if res.transactions > 1 || time.Now().Before(lingerUntil) {
				lingerUntil = time.Now().Add(lingerFor)
				if r.waiting {
					if err := s.wait(ctx, false); err != nil {
						return err
					}
				}
			}
		}
		if res.full {
			continue // more is waiting: read on at once
		}
		// A read that was not full found everything committed before it.
		// While waiting and settled, a notification announces anything
		// newer, so there is nothing to read until one comes (the code
		// below goes straight to sleep); while lingering, watch.
		if !r.waiting && time.Now().Before(lingerUntil) {
			changed, err := s.watch(ctx, lingerUntil, res.events > 0)
			if err != nil || r.stopping(ctx) {
				return err
			}
			if changed {
				continue
			}
		}
		if !r.waiting {
			if err := s.wait(ctx, true); err != nil {
				return err
			}
			settled = false
		}
		var again <-chan time.Time // nil: wait for a notification
		if !settled {
			// Writers that decided not to notify before EnterWaiting
			// hold their outbox lock until their rows are visible.
			inFlight, err := s.writersInFlight(ctx)
			if err != nil {
				return err
			}
			if !inFlight {
				settled, backoff = true, 0
				continue // one more read finds them all; newer ones notify
			}
			// Look again shortly; backing off, so that a long-running
			// writer costs little.
			backoff = min(max(2*backoff, time.Millisecond), 100*time.Millisecond)
			again = time.After(backoff)
		} else if err := s.prune(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.stop:
			return nil
		case <-s.wake:
		case <-poll.C:
		case <-again:
		}
	}
}

// While lingering after a busy moment, for up to lingerFor after the last
// events, the relay reads the outbox itself instead of having every
// writer's commit NOTIFY it: after a read that found events it pauses as
// long as that read and its delivery took (between watchEvery and
// maxBusyPause), so that it spends at most half its time reading, and
// backs off when the machine is loaded; after one that found nothing it
// asks sqlkit.Changed every watchEvery first.
const (
	lingerFor    = 50 * time.Millisecond
	watchEvery   = time.Millisecond
	maxBusyPause = 10 * time.Millisecond
)

// watch pauses and reports true when the last read found events (busy),
// or else asks sqlkit.Changed every watchEvery, about the last read's
// snapshot, until it says yes (true), until, or the relay stops (false).
func (s *session) watch(ctx context.Context, until time.Time, busy bool) (bool, error) {
	r := s.r
	every := watchEvery
	if busy {
		every = min(max(s.lastRead, watchEvery), maxBusyPause)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for time.Now().Before(until) {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-r.stop:
			return false, nil
		case <-s.wake:
			return true, nil
		case <-t.C:
		}
		if busy {
			return true, nil
		}
		tctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		changed, err := sqlkit.Changed(tctx, s.worker, s.snap)
		cancel()
		if err != nil || changed {
			return changed, err
		}
	}
	return false, nil
}

// wait enters (on) or leaves (off) the waiting state of sqlkit.EnterWaiting.
func (s *session) wait(ctx context.Context, on bool) error {
	ctx, cancel := context.WithTimeout(ctx, s.r.cfg.Timeout)
	defer cancel()
	if on {
		if err := sqlkit.EnterWaiting(ctx, s.worker); err != nil {
			return err
		}
	} else if err := sqlkit.LeaveWaiting(ctx, s.worker); err != nil {
		return err
	}
	s.r.waiting = on
	return nil
}

// resetWaiting starts a session not waiting: it undoes the previous
// session's EnterWaiting, and clears those of relays that went away without
// undoing theirs when this one is alone.
func (s *session) resetWaiting(ctx context.Context) error {
	if s.r.waiting {
		if err := s.wait(ctx, false); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.r.cfg.Timeout)
	defer cancel()
	lease, _, _ := s.r.lease.get()
	return sqlkit.ResetWaiting(ctx, s.worker, lease)
}

// leaveWaiting undoes EnterWaiting when the session ends, if the connection
// still works and the lease is still valid; otherwise the next session does,
// or forgets it (see acquire).
func (s *session) leaveWaiting() {
	if s.r.waiting && s.r.lease.valid() {
		_ = s.wait(context.Background(), false)
	}
}

func (s *session) writersInFlight(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.r.cfg.Timeout)
	defer cancel()
	return sqlkit.WritersInFlight(ctx, s.worker)
}

// batchResult says what deliverBatch did.
type batchResult struct {
	events       int  // delivered
	transactions int  // how many transactions they came from
	full         bool // the batch stopped at its limit: read again at once
}

// deliverBatch delivers one batch to every handler and records it as
// delivered. When the batch is full, the next one is read while the
// handlers work, so that PostgreSQL and the handlers (Redis) are busy at the
// same time; it is delivered by the next call.
func (s *session) deliverBatch(ctx context.Context) (res batchResult, err error) {
	r := s.r
	b := s.ahead
	s.ahead = nil
	if b == nil {
		fetched, err := s.fetch(ctx, s.cursor, s.rows)
		if err != nil {
			return res, err
		}
		b = &fetched
	}
	s.rows = b.Rows
	s.snap = b.Snapshot
	next := s.cursor.Advance(*b)
	res.full = b.Full
	if len(b.Rows) == 0 {
		// Nothing to deliver. When the batch still stopped at its limit
		// (updates that changed nothing), record the progress, so that
		// those rows are not read again after a restart; otherwise the
		// saved cursor is still true, and the newer one is kept in memory.
		if b.Full {
			tctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
			defer cancel()
			lease, _, _ := r.lease.get()
			if err := sqlkit.SaveProgress(tctx, s.worker, lease, next, nil); err != nil {
				return res, err
			}
		}
		s.cursor = next
		return res, nil
	}
	s.events = toEvents(b.Rows, s.events[:0])
	res.events = len(s.events)
	res.transactions = 1
	for i := 1; i < len(s.events); i++ {
		if s.events[i].Txid != s.events[i-1].Txid {
			res.transactions++
		}
	}

	var (
		ahead    sqlkit.Batch
		aheadErr error
		wg       sync.WaitGroup
	)
	// A lease that ran out may be another relay's by now: hand nothing
	// more to the handlers (the watchdog is ending the session).
	if !r.lease.valid() {
		return res, fmt.Errorf("%w: %w", ErrWatchdog, errLeaseLapsed)
	}
	if b.Full {
		spare := s.spare
		wg.Go(func() { ahead, aheadErr = s.fetch(ctx, next, spare) })
	}
	err = s.deliver(ctx, s.events)
	wg.Wait()
	if err != nil {
		return res, err
	}
	tctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	lease, _, _ := r.lease.get()
	if err := sqlkit.SaveProgress(tctx, s.worker, lease, next, s.parked); err != nil {
		return res, err
	}
	s.cursor, s.parked = next, s.parked[:0]
	r.mu.Lock()
	handlers := r.handlers
	r.mu.Unlock()
	checkpoint(handlers, Delivery{Name: r.cfg.Name, Token: lease.Token})
	r.log.Debug("delivered batch", "events", len(b.Rows), "full", b.Full)
	if !b.Full {
		return res, nil
	}
	if aheadErr != nil {
		return res, aheadErr
	}
	s.ahead = &ahead
	s.rows, s.spare = ahead.Rows, s.rows
	return res, nil
}

// fetch reads the batch that follows cursor c into rows.
func (s *session) fetch(ctx context.Context, c sqlkit.Cursor, rows []sqlkit.Row) (sqlkit.Batch, error) {
	ctx, cancel := context.WithTimeout(ctx, s.r.cfg.Timeout)
	defer cancel()
	return sqlkit.Fetch(ctx, s.worker, c, s.r.cfg.BatchSize, rows)
}

// pruneBatch is how many outbox rows one DELETE removes at most.
const pruneBatch = 1000

// prune deletes delivered events older than Retention, at most once per
// Retention (and at least once a minute), while the relay is idle. A
// failure to prune is logged, not fatal: it must not stop delivery.
func (s *session) prune(ctx context.Context) error {
	r := s.r
	if r.cfg.Retention < 0 || time.Since(s.lastPrune) < min(r.cfg.Retention, time.Minute) {
		return nil
	}
	s.lastPrune = time.Now()
	var total int64
	for !r.stopping(ctx) {
		tctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		lease, _, _ := r.lease.get()
		n, err := sqlkit.PruneAs(tctx, s.worker, lease, r.cfg.Retention, pruneBatch)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.log.Warn("could not prune delivered events; the outbox will grow", "err", err)
			return nil
		}
		total += n
		if n < pruneBatch {
			break
		}
	}
	if total > 0 {
		r.log.Debug("pruned delivered events", "deleted", total)
	}
	return nil
}
