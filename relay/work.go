package relay

import (
	"context"
	"time"

	"github.com/pgrelay/pgrelay/sqlkit"
)

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
			// More than a few transactions in one batch (while lingering
			// too, where reads are paced): writers are busy. NOTIFY would
			// serialise their commits, so stop asking for it, and watch
			// for a while. Fewer, and the notifications are cheaper than
			// the paced reads' latency.
			if res.transactions > lingerAbove {
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
// asks sqlkit.Changed every watchEvery first. It lingers after a read that
// found more than lingerAbove transactions: at a steady 1,000 single-row
// transactions a second, lingering after any read of two or more had
// events wait 1.8–1.9 ms (p50) against 1.0 without lingering, and after
// reads of more than three still 1.6–1.7, while writers busy enough to
// feel NOTIFY's serialised commits (8 clients, TPC-B) fill reads with more
// and kept their throughput with every threshold up to ten (see
// internal/bench/tried.md).
const (
	lingerAbove  = 6
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
