package relay

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pgrelay/pgrelay/sqlkit"
)

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
	began := time.Now()
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
	r.observe(Activity{Kind: ActivityBatch, Events: s.events, Duration: time.Since(began)})
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
