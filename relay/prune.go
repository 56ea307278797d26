package relay

import (
	"context"
	"time"

	"github.com/pgrelay/pgrelay/sqlkit"
)

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
